//! Connection files: how a kernel's five sockets are reached and how messages are signed.

use serde::{Deserialize, Serialize};

/// `tcp` on a loopback address, or `ipc` sockets in a directory (for sandboxed kernels).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Ipc,
}

/// The contents of a Jupyter connection file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub transport: Transport,
    pub ip: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    pub key: String,
    pub signature_scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_name: Option<String>,
}

impl ConnectionInfo {
    /// The ZeroMQ endpoint of one channel, as `tcp://ip:port` or `ipc://path-port`.
    pub fn endpoint(&self, channel: crate::Channel) -> String {
        let port = match channel {
            crate::Channel::Shell => self.shell_port,
            crate::Channel::Iopub => self.iopub_port,
            crate::Channel::Stdin => self.stdin_port,
            crate::Channel::Control => self.control_port,
            crate::Channel::Heartbeat => self.hb_port,
        };
        match self.transport {
            Transport::Tcp => format!("tcp://{}:{}", self.ip, port),
            Transport::Ipc => format!("ipc://{}-{}", self.ip, port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Channel;

    #[test]
    fn endpoints_follow_jupyter_client_conventions() {
        let mut info = ConnectionInfo {
            transport: Transport::Tcp,
            ip: "127.0.0.1".into(),
            shell_port: 1,
            iopub_port: 2,
            stdin_port: 3,
            control_port: 4,
            hb_port: 5,
            key: "k".into(),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: None,
        };
        assert_eq!(info.endpoint(Channel::Iopub), "tcp://127.0.0.1:2");
        info.transport = Transport::Ipc;
        info.ip = "/run/k/kernel".into();
        assert_eq!(info.endpoint(Channel::Heartbeat), "ipc:///run/k/kernel-5");
    }
}
