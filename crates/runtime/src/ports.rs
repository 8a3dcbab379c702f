//! Picking free loopback ports for a kernel's channels.

use std::net::TcpListener;

/// Reserves `n` distinct free ports on `ip` by binding and releasing them together.
pub fn free_tcp_ports(ip: &str, n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((ip, 0)))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}
