//! Test helpers shared by this crate's integration tests: real receivers
//! started on loopback.

#![allow(dead_code)]

pub mod certs;
pub mod receiver;
pub mod smtp;
