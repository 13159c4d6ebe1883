//! The network between trialwatch and CT.gov as hospital and university networks have it: an
//! HTTP proxy ([`Proxy`], a small tokio forwarder: absolute-form requests and CONNECT tunnels)
//! that records what passed through it, and an HTTPS server whose certificate is not trusted
//! ([`UntrustedTls`], Python's `ssl` with a certificate from an rcgen test CA) that counts the
//! connections made to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::smtp_server::TestCerts;

/// An HTTP proxy on 127.0.0.1: `HTTP_PROXY=http://{addr}` sends requests through it.
pub struct Proxy {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The request line of every request it forwarded (`GET http://… HTTP/1.1`,
    /// `CONNECT host:port HTTP/1.1`).
    pub seen: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    /// Start the proxy on its own runtime (so a test can run the binary synchronously).
    pub fn start() -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = forward(conn, log).await;
                });
            }
        });
        Proxy {
            addr,
            seen,
            _rt: rt,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// One client connection: read the request head, connect to the target it names, then pipe
/// bytes both ways (after answering 200 to a CONNECT, or replaying the head otherwise).
async fn forward(conn: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let request_line = head[0].trim_end().to_string();
    log.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let host = if method == "CONNECT" {
        target.to_string()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(target);
        rest.split('/').next().unwrap_or("").to_string()
    };
    let mut upstream = TcpStream::connect(&host).await?;
    let mut client = reader.into_inner();
    if method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        // Servers accept the absolute form (`GET http://host/path`) as well.
        upstream.write_all(head.concat().as_bytes()).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// An HTTPS server on 127.0.0.1 whose certificate comes from a fresh test CA nobody trusts:
/// what a TLS-inspecting proxy looks like to a machine without its CA.
pub struct UntrustedTls {
    pub port: u16,
    /// The CA that signed the server's certificate (PEM), for `SSL_CERT_FILE` tests.
    pub ca_file: PathBuf,
    connections: PathBuf,
    child: Child,
}

const TLS_SERVER: &str = r#"
import socket, ssl, sys
cert, key, log = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    with open(log, "a") as f:
        f.write("connection\n")
    try:
        t = ctx.wrap_socket(c, server_side=True)
        t.recv(65536)
        t.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        t.close()
    except Exception:
        c.close()
"#;

impl UntrustedTls {
    pub fn start(dir: &Path) -> UntrustedTls {
        let certs = TestCerts::create(dir);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &certs.ca_pem).unwrap();
        let connections = dir.join("tls-connections.log");
        std::fs::write(&connections, "").unwrap();
        let python = std::env::var("TRIALWATCH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(TLS_SERVER)
            .arg(&certs.cert_path)
            .arg(&certs.key_path)
            .arg(&connections)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run `{python}` for the TLS test server: {e}"));
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("the TLS server's port");
        UntrustedTls {
            port,
            ca_file,
            connections,
            child,
        }
    }

    /// How many TCP connections were made to the server so far.
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(&self.connections)
            .unwrap()
            .lines()
            .count()
    }
}

impl Drop for UntrustedTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
