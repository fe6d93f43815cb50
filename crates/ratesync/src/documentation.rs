//! The Rust examples of the documentation, compiled and run by `cargo test --doc`
//! like the examples in these doc comments: one item per page that has Rust code
//! blocks or is meant for them (`python/tests/test_docs_examples.py` checks that no
//! page with Rust blocks is left out). A page named here must exist, or the doc
//! tests do not build.

#[doc = include_str!("../../../README.md")]
struct Readme;
#[doc = include_str!("../../../docs/api-reference.md")]
struct ApiReference;
#[doc = include_str!("../../../docs/configuration.md")]
struct Configuration;
#[doc = include_str!("../../../docs/engines/memory.md")]
struct EngineMemory;
#[doc = include_str!("../../../docs/engines/nats.md")]
struct EngineNats;
#[doc = include_str!("../../../docs/engines/postgres.md")]
struct EnginePostgres;
#[doc = include_str!("../../../docs/engines/redis.md")]
struct EngineRedis;
#[doc = include_str!("../../../docs/http-rust.md")]
struct HttpRust;
#[doc = include_str!("../../../docs/observability.md")]
struct Observability;
