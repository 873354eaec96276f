//! MySQL/MariaDB: liveness from the server's greeting, and an authenticated `COM_PING`.
//!
//! Without credentials the check reads only the initial handshake packet the server sends on
//! connect (protocol 10, the version, MariaDB's `5.5.5-` prefix removed) and closes. With
//! credentials it answers with `mysql_native_password` (SHA-1 scramble, done here with ring:
//! the protocol subset is about 150 lines, smaller than any client crate and with no second TLS or
//! runtime stack), sends `COM_PING` and `COM_QUIT`. Servers whose user asks for another plugin
//! (`caching_sha2_password`) give an `unknown` verdict naming the plugin. Credentials travel in the
//! clear (the scramble hides the password, not the session): point it at loopback.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::check::{Check, Observation, Unit};
use crate::checks::net::{Target, connect};
use crate::error::Result;
use crate::status::Reason;

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const MAX_PACKET: usize = 64 * 1024;
const NATIVE: &str = "mysql_native_password";

/// Checks a MySQL or MariaDB server; metrics `connect_seconds`, `server_version`
/// (major·10000 + minor·100 + patch) and, with credentials, `ping_seconds`.
#[derive(Clone)]
pub struct MysqlCheck {
    target: Target,
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for MysqlCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlCheck")
            .field("target", &self.target)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl MysqlCheck {
    /// A liveness check of `host:port` from the greeting alone.
    pub fn new(address: &str) -> Result<MysqlCheck> {
        Ok(MysqlCheck {
            target: Target::parse("address", address)?,
            credentials: None,
        })
    }

    /// Also logs in as `user` and pings.
    #[must_use]
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }
}

/// What the server's greeting says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The version as sent, MariaDB's `5.5.5-` prefix removed.
    pub version: String,
    /// True for MariaDB.
    pub mariadb: bool,
    /// The 20-byte scramble.
    scramble: Vec<u8>,
    /// The server's default auth plugin.
    pub auth_plugin: String,
    /// Server capability flags.
    pub capabilities: u32,
}

impl Greeting {
    /// The version as major·10000 + minor·100 + patch, if it starts with three numbers.
    pub fn version_number(&self) -> Option<f64> {
        let mut parts = self
            .version
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|p| p.parse::<u32>().ok());
        let (a, b, c) = (parts.next()??, parts.next()??, parts.next()??);
        Some(f64::from(a) * 10_000.0 + f64::from(b) * 100.0 + f64::from(c))
    }
}

/// Parses an initial handshake packet's payload (protocol 10); an error packet or anything else is
/// an error message.
pub fn parse_greeting(payload: &[u8]) -> std::result::Result<Greeting, String> {
    match payload.first() {
        Some(10) => {}
        Some(0xff) => return Err(format!("server refused: {}", error_text(payload))),
        Some(v) => return Err(format!("unsupported protocol version {v}")),
        None => return Err("empty greeting".into()),
    }
    let rest = &payload[1..];
    let nul = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or("greeting without a version terminator")?;
    let raw_version = String::from_utf8_lossy(&rest[..nul]).into_owned();
    let mut at = 1 + nul + 1;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let slice = payload
            .get(*at..*at + n)
            .ok_or_else(|| "greeting cut short".to_owned())?;
        *at += n;
        Ok(slice)
    };
    take(&mut at, 4)?; // connection id
    let mut scramble = take(&mut at, 8)?.to_vec();
    take(&mut at, 1)?; // filler
    let low = take(&mut at, 2)?;
    let mut capabilities = u32::from(u16::from_le_bytes([low[0], low[1]]));
    let mut auth_plugin = NATIVE.to_owned();
    if at < payload.len() {
        take(&mut at, 1)?; // character set
        take(&mut at, 2)?; // status flags
        let high = take(&mut at, 2)?;
        capabilities |= u32::from(u16::from_le_bytes([high[0], high[1]])) << 16;
        let auth_len = usize::from(take(&mut at, 1)?[0]);
        take(&mut at, 10)?; // reserved (MariaDB's extended capabilities)
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let n = auth_len.saturating_sub(8).max(13);
            let part = take(&mut at, n)?;
            let part = part.strip_suffix(&[0]).unwrap_or(part);
            scramble.extend_from_slice(part);
        }
        if capabilities & CLIENT_PLUGIN_AUTH != 0 && at < payload.len() {
            let name = &payload[at..];
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            auth_plugin = String::from_utf8_lossy(&name[..end]).into_owned();
        }
    }
    let (version, mariadb) = match raw_version.strip_prefix("5.5.5-") {
        Some(v) => (v.to_owned(), true),
        None => (raw_version.clone(), raw_version.contains("MariaDB")),
    };
    Ok(Greeting {
        mariadb: mariadb || version.contains("MariaDB"),
        version,
        scramble,
        auth_plugin,
        capabilities,
    })
}

fn error_text(payload: &[u8]) -> String {
    // 0xff, error code (2), then `#` and a 5-byte SQL state under protocol 4.1, then the message.
    let code = payload
        .get(1..3)
        .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let mut msg = payload.get(3..).unwrap_or_default();
    if msg.first() == Some(&b'#') {
        msg = msg.get(6..).unwrap_or_default();
    }
    format!("error {code}: {}", String::from_utf8_lossy(msg))
}

fn error_code(payload: &[u8]) -> u16 {
    payload
        .get(1..3)
        .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]))
}

/// `mysql_native_password`: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
pub fn native_password_scramble(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = digest(&SHA1, password);
    let stage2 = digest(&SHA1, stage1.as_ref());
    let mut ctx = Context::new(&SHA1);
    ctx.update(scramble);
    ctx.update(stage2.as_ref());
    let mix = ctx.finish();
    stage1
        .as_ref()
        .iter()
        .zip(mix.as_ref())
        .map(|(a, b)| a ^ b)
        .collect()
}

async fn read_packet(stream: &mut TcpStream) -> std::result::Result<(u8, Vec<u8>), String> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_PACKET {
        return Err(format!("packet of {len} bytes is too large"));
    }
    let mut payload = vec![0u8; len];
    stream
        .read_exact(&mut payload)
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    Ok((header[3], payload))
}

async fn write_packet(
    stream: &mut TcpStream,
    seq: u8,
    payload: &[u8],
) -> std::result::Result<(), String> {
    let len = payload.len();
    let mut packet = Vec::with_capacity(len + 4);
    packet.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
    packet.extend_from_slice(payload);
    stream
        .write_all(&packet)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

fn handshake_response(user: &str, auth: &[u8]) -> Vec<u8> {
    let caps =
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    let mut p = Vec::with_capacity(64 + user.len());
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45); // utf8mb4_general_ci
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    p.extend_from_slice(NATIVE.as_bytes());
    p.push(0);
    p
}

enum LoginFailure {
    Denied(String),
    Unsupported(String),
    Protocol(String),
}

async fn login(
    stream: &mut TcpStream,
    greeting: &Greeting,
    user: &str,
    password: &str,
) -> std::result::Result<(), LoginFailure> {
    if greeting.capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(LoginFailure::Unsupported(
            "server without protocol 4.1".into(),
        ));
    }
    let auth = native_password_scramble(password.as_bytes(), &greeting.scramble);
    write_packet(stream, 1, &handshake_response(user, &auth))
        .await
        .map_err(LoginFailure::Protocol)?;
    let (mut seq, mut reply) = read_packet(stream).await.map_err(LoginFailure::Protocol)?;
    if reply.first() == Some(&0xfe) {
        // Auth switch: the user's plugin differs from the server's default.
        let body = &reply[1..];
        let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
        let plugin = String::from_utf8_lossy(&body[..end]).into_owned();
        if plugin != NATIVE {
            return Err(LoginFailure::Unsupported(format!(
                "the user needs auth plugin `{plugin}`"
            )));
        }
        let data = body.get(end + 1..).unwrap_or_default();
        let data = data.strip_suffix(&[0]).unwrap_or(data);
        let auth = native_password_scramble(password.as_bytes(), data);
        write_packet(stream, seq.wrapping_add(1), &auth)
            .await
            .map_err(LoginFailure::Protocol)?;
        (seq, reply) = read_packet(stream).await.map_err(LoginFailure::Protocol)?;
    }
    let _ = seq;
    match reply.first() {
        Some(0x00) => Ok(()),
        Some(0xff) if error_code(&reply) == 1045 => Err(LoginFailure::Denied(error_text(&reply))),
        Some(0xff) => Err(LoginFailure::Protocol(error_text(&reply))),
        Some(0x01) => Err(LoginFailure::Unsupported(
            "the server asks for more auth data".into(),
        )),
        _ => Err(LoginFailure::Protocol(
            "unexpected answer to the login".into(),
        )),
    }
}

#[async_trait::async_trait]
impl Check for MysqlCheck {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("connect_seconds")
    }

    async fn run(&self) -> Observation {
        let begun = Instant::now();
        let (mut stream, _) = match connect(&self.target).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        let greeting = match read_packet(&mut stream)
            .await
            .and_then(|(_, p)| parse_greeting(&p))
        {
            Ok(g) => g,
            Err(e) => {
                return Observation::critical(Reason::Protocol, format!("{}: {e}", self.target));
            }
        };
        let connect_seconds = begun.elapsed().as_secs_f64();
        let flavour = if greeting.mariadb { "MariaDB" } else { "MySQL" };
        let mut observation = Observation::ok(format!(
            "{} {flavour} {} answered in {:.1} ms",
            self.target,
            greeting.version,
            connect_seconds * 1e3
        ))
        .with_metric("connect_seconds", connect_seconds, Unit::Seconds);
        if let Some(v) = greeting.version_number() {
            observation = observation.with_metric("server_version", v, Unit::Number);
        }
        let Some((user, password)) = &self.credentials else {
            return observation;
        };
        let ping_begun = Instant::now();
        let failed = match login(&mut stream, &greeting, user, password).await {
            Err(LoginFailure::Denied(e)) => Some((Reason::AuthFailed, true, e)),
            Err(LoginFailure::Unsupported(e)) => Some((Reason::CheckFailed, false, e)),
            Err(LoginFailure::Protocol(e)) => Some((Reason::Protocol, true, e)),
            Ok(()) => {
                let ping = async {
                    write_packet(&mut stream, 0, &[0x0e]).await?;
                    let (_, reply) = read_packet(&mut stream).await?;
                    match reply.first() {
                        Some(0x00) => Ok(()),
                        Some(0xff) => Err(error_text(&reply)),
                        _ => Err("unexpected answer to COM_PING".to_owned()),
                    }
                };
                match ping.await {
                    Ok(()) => {
                        // COM_QUIT; the server closes without answering.
                        let _ = write_packet(&mut stream, 0, &[0x01]).await;
                        None
                    }
                    Err(e) => Some((Reason::Protocol, true, e)),
                }
            }
        };
        match failed {
            None => {
                let ping = ping_begun.elapsed().as_secs_f64();
                observation.message = format!(
                    "{}; ping as {user} in {:.1} ms",
                    observation.message,
                    ping * 1e3
                );
                observation.with_metric("ping_seconds", ping, Unit::Seconds)
            }
            Some((reason, critical, e)) => {
                let message = format!("{}; login as {user}: {e}", observation.message);
                let mut o = if critical {
                    Observation::critical(reason, message)
                } else {
                    Observation::unknown(reason, message)
                };
                o.metrics = observation.metrics;
                o
            }
        }
    }
}
