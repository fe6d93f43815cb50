//! "did you mean `x`?" for misspelt keys, engines, algorithms and store ids.

/// The candidate closest to `word` within an edit distance of 2 (ignoring case),
/// if any. Short words need a closer match, so `db` does not suggest `url`.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let word = word.to_lowercase();
    let max = if word.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (distance(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters. Words longer than 64 characters are never
/// close to a key, and bounding them keeps hostile input cheap.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(65).collect();
    let b: Vec<char> = b.chars().take(65).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["rate_per_second", "burst", "store", "limit"];
        assert_eq!(did_you_mean("rate_per_sec", keys), None);
        assert_eq!(
            did_you_mean("rate_persecond", keys),
            Some("rate_per_second")
        );
        assert_eq!(did_you_mean("brust", keys), Some("burst"));
        assert_eq!(did_you_mean("Store", keys), Some("store"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
