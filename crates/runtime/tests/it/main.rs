//! Integration tests of the runtime backends with real ipykernel, and of the sandbox with real
//! bubblewrap and cgroups.

mod contract;
mod sandbox;
mod support;
