//! What a client may send a kernel, sorted before anything reaches it. Each message on shell,
//! control and stdin is let through as sent, refused, or, when the kernel may run text it
//! carries, parsed strictly ([`commonlab_protocol::parse_strict`]) with that text handed to the
//! policy gate; the kernel then gets the parsed content re-serialised, so it runs exactly what
//! was checked.
//!
//! Where ipykernel 7 runs text from a message: `execute_request` (its `code`, and its
//! `user_expressions`, evaluated after the cell) on shell and on control, which accepts every shell
//! request; `complete_request` (IPython's completer evaluates what it completes once a cell sets
//! `Completer.evaluation` to `unsafe`); `debug_request` (the debugger evaluates expressions,
//! breakpoint conditions and log messages); comm messages (a comm target's handler gets the data
//! and may run it). `inspect_request` only looks names up, but is checked like completion. The
//! other requests a client needs run nothing and pass; anything else is refused, so a message
//! type a kernel adds later is not run unchecked.

use bytes::Bytes;
use commonlab_protocol::{parse_strict, Channel, RawMessage, StrictJsonError};
use serde_json::Value;

/// What a message carries that the kernel may run; decides how a refusal is answered and
/// whether the check is recorded as a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// `execute_request`: the cell, then its `user_expressions`.
    Execute,
    /// `complete_request` and `inspect_request`: text being typed, checked but not recorded, as
    /// nothing was asked to run.
    Typing,
    /// `debug_request`: the strings of a debugger command's arguments.
    Debug,
    /// `comm_open`, `comm_msg`, `comm_close`: the strings of the data and metadata a comm
    /// handler gets.
    Comm,
}

/// The verdict on one message from a client.
#[derive(Debug, PartialEq)]
pub(crate) enum Screened {
    /// It runs nothing: forward it as sent.
    Pass,
    /// Check `code` with the policy, then forward the message with these parts.
    Check {
        carrier: Carrier,
        code: String,
        /// The content as parsed, re-serialised.
        content: Bytes,
        /// The metadata as parsed, re-serialised, where a handler gets it (comms).
        metadata: Option<Bytes>,
    },
    /// Do not forward it.
    Refuse(Refusal),
}

/// Why a message was not forwarded: a stable code and an explanation for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// Requests that run nothing, on shell and on control.
const HARMLESS: &[&str] = &[
    "kernel_info_request",
    "comm_info_request",
    "history_request",
    "is_complete_request",
    "connect_request",
    "interrupt_request",
    "shutdown_request",
];

/// Requests that run nothing and that ipykernel answers on control only.
const HARMLESS_ON_CONTROL: &[&str] = &[
    "usage_request",
    "create_subshell_request",
    "delete_subshell_request",
    "list_subshell_request",
];

/// The debugger commands passed on (all JupyterLab's debugger sends, and the standard ones it
/// may); the strings of their arguments are checked. Others (`launch`, which starts a program,
/// `goto`, data breakpoints, ...) are refused.
const DEBUG_COMMANDS: &[&str] = &[
    "initialize",
    "attach",
    "configurationDone",
    "debugInfo",
    "dumpCell",
    "setBreakpoints",
    "setExceptionBreakpoints",
    "setFunctionBreakpoints",
    "stackTrace",
    "scopes",
    "variables",
    "threads",
    "source",
    "loadedSources",
    "modules",
    "exceptionInfo",
    "continue",
    "next",
    "stepIn",
    "stepOut",
    "pause",
    "evaluate",
    "setExpression",
    "setVariable",
    "completions",
    "inspectVariables",
    "richInspectVariables",
    "copyToGlobals",
    "disconnect",
    "terminate",
];

/// Sorts one message from a client; `msg_type` is its header's.
pub(crate) fn screen(channel: Channel, msg_type: &str, message: &RawMessage) -> Screened {
    match (channel, msg_type) {
        (Channel::Stdin, "input_reply") => Screened::Pass,
        (Channel::Shell | Channel::Control, t) if HARMLESS.contains(&t) => Screened::Pass,
        (Channel::Control, t) if HARMLESS_ON_CONTROL.contains(&t) => Screened::Pass,
        (Channel::Shell | Channel::Control, "execute_request") => {
            outcome(msg_type, execute(&message.content))
        }
        (Channel::Shell | Channel::Control, "complete_request" | "inspect_request") => {
            outcome(msg_type, typing(&message.content))
        }
        (Channel::Control, "debug_request") => outcome(msg_type, debug(&message.content)),
        (Channel::Shell, "comm_open" | "comm_msg" | "comm_close") => {
            outcome(msg_type, comm(msg_type, message))
        }
        _ => Screened::Refuse(Refusal {
            code: "message_type_refused",
            message: format!(
                "Commonlab does not pass {msg_type:?} messages on the {} channel to kernels: only \
                 messages known to run nothing, or whose code the usage policy checks, are passed. \
                 If a client of yours needs it, tell the operators.",
                channel.as_str()
            ),
        }),
    }
}

/// Why content was refused before the policy saw it.
enum Fault {
    Json(StrictJsonError),
    /// A field is missing or of the wrong type: (field, what it must be).
    Field(&'static str, &'static str),
    DebugCommand(String),
}

type Parsed = (Carrier, String, Value, Option<Value>);

fn outcome(msg_type: &str, parsed: Result<Parsed, Fault>) -> Screened {
    match parsed {
        Ok((carrier, code, content, metadata)) => Screened::Check {
            carrier,
            code,
            content: json_bytes(&content),
            metadata: metadata.as_ref().map(json_bytes),
        },
        Err(fault) => Screened::Refuse(refusal(msg_type, fault)),
    }
}

fn json_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("json values serialize"))
}

fn refusal(msg_type: &str, fault: Fault) -> Refusal {
    let unsent = "so it was not sent to the kernel";
    match fault {
        Fault::Json(StrictJsonError::DuplicateKey(key)) => Refusal {
            code: "duplicate_key",
            message: format!(
                "The {msg_type}'s content has the key {key:?} more than once. The usage policy and \
                 the kernel could read different values, {unsent}. Send each key once."
            ),
        },
        Fault::Json(StrictJsonError::Invalid(detail)) => Refusal {
            code: "invalid_json",
            message: format!(
                "The {msg_type}'s content is not valid JSON ({detail}), {unsent}. Send it as one \
                 JSON object."
            ),
        },
        Fault::Field(field, what) => Refusal {
            code: "bad_field",
            message: format!(
                "The {msg_type}'s {field} must be {what}, {unsent}. Send it as the Jupyter \
                 messaging protocol describes it."
            ),
        },
        Fault::DebugCommand(command) => Refusal {
            code: "debug_command_refused",
            message: format!(
                "The {msg_type} for the debugger command {command:?} was not sent to the kernel: \
                 the command could run code the usage policy has not checked. The debugger's usual \
                 commands (breakpoints, stepping, variables, evaluate) work."
            ),
        },
    }
}

/// Parses content strictly; it must be an object.
fn object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, Fault> {
    match parse_strict(bytes).map_err(Fault::Json)? {
        Value::Object(map) => Ok(map),
        _ => Err(Fault::Field("content", "a JSON object")),
    }
}

fn execute(content: &[u8]) -> Result<Parsed, Fault> {
    let content = object(content)?;
    let mut code = match content.get("code") {
        Some(Value::String(code)) => code.clone(),
        _ => return Err(Fault::Field("\"code\"", "text")),
    };
    match content.get("user_expressions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(expressions)) => {
            for expression in expressions.values() {
                let Value::String(expression) = expression else {
                    return Err(Fault::Field(
                        "\"user_expressions\"",
                        "an object of expressions as text",
                    ));
                };
                code.push('\n');
                code.push_str(expression);
            }
        }
        Some(_) => {
            return Err(Fault::Field(
                "\"user_expressions\"",
                "an object of expressions as text",
            ))
        }
    }
    Ok((Carrier::Execute, code, Value::Object(content), None))
}

fn typing(content: &[u8]) -> Result<Parsed, Fault> {
    let content = object(content)?;
    let code = match content.get("code") {
        Some(Value::String(code)) => code.clone(),
        _ => return Err(Fault::Field("\"code\"", "text")),
    };
    Ok((Carrier::Typing, code, Value::Object(content), None))
}

fn debug(content: &[u8]) -> Result<Parsed, Fault> {
    let content = object(content)?;
    let command = match content.get("command") {
        Some(Value::String(command)) => command.as_str(),
        _ => return Err(Fault::Field("\"command\"", "text")),
    };
    if !DEBUG_COMMANDS.contains(&command) {
        return Err(Fault::DebugCommand(command.to_owned()));
    }
    let mut code = String::new();
    if let Some(arguments) = content.get("arguments") {
        collect_text(arguments, &mut code);
    }
    Ok((Carrier::Debug, code, Value::Object(content), None))
}

fn comm(msg_type: &str, message: &RawMessage) -> Result<Parsed, Fault> {
    let content = object(&message.content)?;
    if !matches!(content.get("comm_id"), Some(Value::String(_))) {
        return Err(Fault::Field("\"comm_id\"", "text"));
    }
    if msg_type == "comm_open" && !matches!(content.get("target_name"), Some(Value::String(_))) {
        return Err(Fault::Field("\"target_name\"", "text"));
    }
    let metadata = match parse_strict(&message.metadata).map_err(Fault::Json)? {
        metadata @ Value::Object(_) => metadata,
        _ => return Err(Fault::Field("metadata", "a JSON object")),
    };
    // A handler gets the whole message; what it could run as code is the text in its JSON.
    // Binary buffers (uploads, arrays) are data, like a file the handler might read.
    let mut code = String::new();
    if let Some(data) = content.get("data") {
        collect_text(data, &mut code);
    }
    collect_text(&metadata, &mut code);
    Ok((Carrier::Comm, code, Value::Object(content), Some(metadata)))
}

/// Every string in `value`, keys included, one per line.
fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|item| collect_text(item, out)),
        Value::Object(map) => {
            for (key, item) in map {
                out.push_str(key);
                out.push('\n');
                collect_text(item, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str) -> RawMessage {
        RawMessage {
            header: Bytes::from_static(b"{}"),
            parent_header: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::copy_from_slice(content.as_bytes()),
            buffers: Vec::new(),
        }
    }

    fn refused(channel: Channel, msg_type: &str, content: &str) -> &'static str {
        match screen(channel, msg_type, &message(content)) {
            Screened::Refuse(refusal) => {
                assert!(refusal.message.contains(msg_type), "{refusal:?}");
                refusal.code
            }
            other => panic!("{msg_type} {content} was not refused: {other:?}"),
        }
    }

    fn checked(channel: Channel, msg_type: &str, message: &RawMessage) -> (Carrier, String, Value) {
        match screen(channel, msg_type, message) {
            Screened::Check {
                carrier,
                code,
                content,
                ..
            } => (carrier, code, serde_json::from_slice(&content).unwrap()),
            other => panic!("{msg_type} was not checked: {other:?}"),
        }
    }

    #[test]
    fn a_cell_is_checked_and_forwarded_as_parsed() {
        for channel in [Channel::Shell, Channel::Control] {
            let (carrier, code, content) = checked(
                channel,
                "execute_request",
                &message(
                    r#"{"code": "print(1)",  "silent": false, "user_expressions": {"a": "x + 1", "b": "y"}}"#,
                ),
            );
            assert_eq!(carrier, Carrier::Execute);
            assert_eq!(code, "print(1)\nx + 1\ny");
            assert_eq!(
                content,
                serde_json::json!({"code": "print(1)", "silent": false, "user_expressions": {"a": "x + 1", "b": "y"}})
            );
        }
    }

    #[test]
    fn a_cell_that_does_not_parse_cleanly_is_refused() {
        for (content, code) in [
            (r#"{"code": "1", "code": "2"}"#, "duplicate_key"),
            (
                r#"{"code": "1", "user_expressions": {"a": "1", "a": "2"}}"#,
                "duplicate_key",
            ),
            (
                r#"{"code": "1", "metadata": {"k": 1, "k": 2}}"#,
                "duplicate_key",
            ),
            (r#"{"code": "1""#, "invalid_json"),
            (r#"{"code": NaN}"#, "invalid_json"),
            (r#"{"code": "\ud800"}"#, "invalid_json"),
            (r#"["code"]"#, "bad_field"),
            (r#"{"code": ["1"]}"#, "bad_field"),
            (r#"{"silent": true}"#, "bad_field"),
            (r#"{"code": "1", "user_expressions": ["x"]}"#, "bad_field"),
            (
                r#"{"code": "1", "user_expressions": {"a": 1}}"#,
                "bad_field",
            ),
        ] {
            assert_eq!(
                refused(Channel::Shell, "execute_request", content),
                code,
                "{content}"
            );
        }
        assert_eq!(
            refused(
                Channel::Shell,
                "complete_request",
                r#"{"code": "a", "code": "b", "cursor_pos": 1}"#
            ),
            "duplicate_key"
        );
    }

    #[test]
    fn completion_and_inspection_are_checked_as_typing() {
        for msg_type in ["complete_request", "inspect_request"] {
            let (carrier, code, _) = checked(
                Channel::Shell,
                msg_type,
                &message(r#"{"code": "np.ar", "cursor_pos": 5}"#),
            );
            assert_eq!((carrier, code.as_str()), (Carrier::Typing, "np.ar"));
        }
    }

    #[test]
    fn debugger_commands_are_checked_or_refused() {
        let (carrier, code, _) = checked(
            Channel::Control,
            "debug_request",
            &message(
                r#"{"type": "request", "seq": 3, "command": "setBreakpoints", "arguments": {"source": {"path": "/tmp/1.py"}, "breakpoints": [{"line": 2, "condition": "x > 1"}]}}"#,
            ),
        );
        assert_eq!(carrier, Carrier::Debug);
        assert!(code.contains("x > 1\n"), "{code}");
        for content in [
            r#"{"type": "request", "seq": 1, "command": "launch", "arguments": {"program": "x.py"}}"#,
            r#"{"type": "request", "seq": 1, "command": "goto", "arguments": {}}"#,
        ] {
            assert_eq!(
                refused(Channel::Control, "debug_request", content),
                "debug_command_refused"
            );
        }
        assert_eq!(
            refused(Channel::Control, "debug_request", r#"{"seq": 1}"#),
            "bad_field"
        );
    }

    #[test]
    fn comm_messages_are_checked_with_what_a_handler_gets() {
        let mut comm = message(
            r#"{"comm_id": "c1", "target_name": "t", "data": {"code": "run_me()", "n": 1}}"#,
        );
        comm.metadata = Bytes::from_static(br#"{"note": "in metadata"}"#);
        comm.buffers = vec![Bytes::from_static(b"binary data")];
        let Screened::Check {
            carrier,
            code,
            metadata,
            ..
        } = screen(Channel::Shell, "comm_open", &comm)
        else {
            panic!("comm_open is checked");
        };
        assert_eq!(carrier, Carrier::Comm);
        for part in ["run_me()", "in metadata"] {
            assert!(code.contains(part), "{code}");
        }
        assert!(!code.contains("binary data"), "{code}");
        assert_eq!(metadata.as_deref(), Some(&br#"{"note":"in metadata"}"#[..]));
        assert_eq!(
            refused(Channel::Shell, "comm_msg", r#"{"data": {}}"#),
            "bad_field"
        );
        assert_eq!(
            refused(
                Channel::Shell,
                "comm_open",
                r#"{"comm_id": "c", "data": {}}"#
            ),
            "bad_field"
        );
    }

    #[test]
    fn what_runs_nothing_passes_and_anything_else_is_refused() {
        for (channel, msg_type) in [
            (Channel::Shell, "kernel_info_request"),
            (Channel::Shell, "history_request"),
            (Channel::Shell, "is_complete_request"),
            (Channel::Shell, "comm_info_request"),
            (Channel::Control, "interrupt_request"),
            (Channel::Control, "shutdown_request"),
            (Channel::Control, "usage_request"),
            (Channel::Control, "create_subshell_request"),
            (Channel::Stdin, "input_reply"),
        ] {
            assert_eq!(
                screen(channel, msg_type, &message("not even json")),
                Screened::Pass,
                "{msg_type} on {channel:?}"
            );
        }
        for (channel, msg_type) in [
            (Channel::Shell, "apply_request"),
            (Channel::Shell, "debug_request"),
            (Channel::Shell, "usage_request"),
            (Channel::Control, "comm_open"),
            (Channel::Stdin, "execute_request"),
            (Channel::Shell, ""),
        ] {
            assert_eq!(
                refused(channel, msg_type, "{}"),
                "message_type_refused",
                "{msg_type} on {channel:?}"
            );
        }
    }
}
