//! `wait_for` probes: a TCP connection, an HTTP answer, an SQL query on
//! the runbook's PostgreSQL server. Each polls until it succeeds or its
//! deadline passes, and the error names what was awaited and the last
//! answer.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunker_policy::runbook::Probe;

use super::steps::State;
use super::POLL;
use crate::error::{EngineError, Result};
use crate::CancelToken;

/// One line saying what is awaited.
pub(crate) fn describe(p: &Probe) -> String {
    match p {
        Probe::Tcp(a) if a == "postgres" => "a TCP connection to the PostgreSQL server".into(),
        Probe::Tcp(a) => format!("a TCP connection to {a}"),
        Probe::Http(u) => format!("an HTTP 2xx answer from {u}"),
        Probe::Sql { query, .. } => format!("`{query}` to be true on the PostgreSQL server"),
    }
}

/// Poll `p` until it succeeds or `timeout` passes.
pub(crate) fn wait(
    st: &State,
    p: &Probe,
    timeout: Duration,
    cancel: &CancelToken,
) -> Result<String> {
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        let last = match once(st, p) {
            Ok(()) => {
                return Ok(format!(
                    "{} after {:.1}s ({tries} tr{})",
                    describe(p),
                    started.elapsed().as_secs_f64(),
                    if tries == 1 { "y" } else { "ies" }
                ))
            }
            Err(e) => e,
        };
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        if started.elapsed() >= timeout {
            return Err(EngineError::Invalid(format!(
                "gave up waiting for {} after {} ({tries} tries); the last answer: {last}",
                describe(p),
                humantime::format_duration(timeout)
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn once(st: &State, p: &Probe) -> std::result::Result<(), String> {
    match p {
        Probe::Tcp(a) => {
            let addr = if a == "postgres" {
                let s = st
                    .server()
                    .ok_or("no PostgreSQL server was started by the runbook")?;
                format!("127.0.0.1:{}", s.port)
            } else {
                a.clone()
            };
            connect(&addr).map(|_| ())
        }
        Probe::Http(u) => http_get(u),
        Probe::Sql { query, database } => sql(st, query, database.as_deref()),
    }
}

fn connect(addr: &str) -> std::result::Result<TcpStream, String> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    let mut last = format!("{addr}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// A plain HTTP/1.0 GET (http:// only); 2xx is success.
fn http_get(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be probed"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = connect(&addr)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "{url} answered {}",
            line.lines().next().unwrap_or("nothing")
        ))
    }
}

/// The query on the runbook's server through `psql`; true is `t`, `true`,
/// `1`, or any non-empty answer that is not `f`/`false`/`0`.
fn sql(st: &State, query: &str, database: Option<&str>) -> std::result::Result<(), String> {
    let s = st
        .server()
        .ok_or("no PostgreSQL server was started by the runbook")?;
    let out = Command::new(s.bin.join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(&s.host)
        .arg("-p")
        .arg(s.port.to_string())
        .arg("-d")
        .arg(database.unwrap_or("postgres"))
        .arg("-c")
        .arg(query)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "" => Err("no rows".into()),
        "f" | "false" | "0" => Err(format!("the answer was {answer}")),
        _ => Ok(()),
    }
}
