//! A real TDS server (iridium_server) for the tests whose services must install: installs
//! wait for the database. `scripts/test-all.sh` installs it into `target/peers/bin`;
//! without it a test fails under CI=true and is otherwise skipped with a reason.

use std::path::{Path, PathBuf};

const PASSWORD: &str = "Iridium-Fleet-Pw1!";

pub struct Iridium {
    server: steward_testkit::iridium::Iridium,
    password_file: PathBuf,
}

impl Iridium {
    /// Starts plain TDS on a free 127.0.0.1 port; the password goes into a file in `dir`.
    pub fn start(dir: &Path) -> Option<Self> {
        let server = steward_testkit::iridium::Iridium::start(PASSWORD)?;
        let password_file = dir.join("db-password");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&password_file, PASSWORD).unwrap();
        Some(Self {
            server,
            password_file,
        })
    }

    /// The Installation's `database` value for it (a database iridium has).
    pub fn database_yaml(&self) -> String {
        format!(
            "{{server: 127.0.0.1, port: {}, name: iridium_sql, user: sa, passwordRef: \"file:{}\", encrypt: false}}",
            self.server.port,
            self.password_file.display()
        )
    }
}
