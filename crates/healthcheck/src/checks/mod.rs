//! The built-in checks.

pub(crate) mod net;

pub mod disk;
pub mod file;
pub mod http;
pub mod mysql;
pub mod process;
pub mod status_page;
pub mod system;
pub mod tcp;
pub mod tls;

pub use disk::DiskCheck;
pub use file::FileFreshnessCheck;
pub use http::HttpCheck;
pub use mysql::MysqlCheck;
pub use process::ProcessCheck;
pub use status_page::{NginxStatusCheck, PhpFpmStatusCheck};
pub use system::{LoadCheck, MemoryCheck, SwapCheck};
pub use tcp::TcpCheck;
pub use tls::TlsCheck;
