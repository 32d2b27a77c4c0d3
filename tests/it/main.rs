//! Every integration test, as one test binary (one link of the crate instead of one per file).
//! Each module is one area; `common` holds the fixtures they share. Tests that need the local
//! AWS stack read `AWS_ENDPOINT_URL` (the Makefile starts LocalStack and sets it).

mod common;

mod cli;
mod cost;
mod crash;
mod deployed;
mod faults;
mod golden;
mod memory;
mod operator;
mod parquet_s3;
mod pipeline;
mod samples;
mod scale;
mod scan;
mod sink;
