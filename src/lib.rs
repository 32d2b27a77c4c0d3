//! s3-import: a self-hosted Amplitude S3 Import. The library does the work; binaries only wire.

pub mod aws;
pub(crate) mod check;
pub mod claims;
pub mod cli;
pub(crate) mod config;
pub mod convert;
pub mod datalang;
pub mod decode;
pub mod dedupe;
pub(crate) mod dynamo;
pub mod emulator;
pub mod invoke;
pub(crate) mod json_out;
pub mod notify;
pub mod ops;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod settings;
pub mod sink;
pub mod source;
pub mod store;
