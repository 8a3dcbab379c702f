//! Integration tests of the server against real ipykernel kernels, over real HTTP and WebSocket
//! connections on 127.0.0.1.

mod accounts;
mod appeals;
mod concurrent_starts;
mod contents;
mod harness;
mod kernels;
mod policy;
mod recovery;
mod revocation;
mod usage;
