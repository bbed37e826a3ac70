//! The lab's directories: an OpenLDAP `slapd` standing in for each ActiveDirectory, as the
//! lab agents stand in for servers. Directories are numbered down from just below the
//! first lab server address (127.0.0.10 for the default 127.0.0.11, then .9, ...), in name
//! order; the port is the URL's, plus 10000 below 1024 (so `ldaps://dc1.example.eng:636`
//! is served on 127.0.0.10:10636, as a normal user). The controllers connect there and
//! check the certificate, issued by the steward CA, for the URL's host. slapd runs with the
//! directory's `account` as its administrator and a fresh database seeded from the desired
//! state on every start: the domain, the `container`, every role group, and an account
//! (`uid`) for every listed member, already in its groups.
//!
//! The bind password is the daemon's `PS_AD_PASSWORD`, generated at start-up when unset
//! ([`provide_password`]); the directory controller reads it through the directory's own
//! `passwordRef`, like any other secret. It is written only into the slapd configuration
//! (mode 0600, in the lab's state directory).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use steward_model::snapshot::ActiveDirectory;
use steward_model::Snapshot;
use steward_pki::CertificateAuthority;
use tokio::process::{Child, Command};

use super::orphans::stop_leftovers;

/// The environment variable the bundled example's `passwordRef` names.
pub const PASSWORD_ENV: &str = "PS_AD_PASSWORD";

/// How long slapd may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum LabDirectoryError {
    #[error("lab directory {name}: no address left below {first} for it (directories are numbered down from there); choose a higher --lab-first-address")]
    NoRoom { name: String, first: Ipv4Addr },
    #[error("lab directory {name}: slapd is not installed (Debian package `slapd`); the directory stays down")]
    NotInstalled { name: String },
    #[error("lab directory {name}: the bind password ({reference}) cannot be read: {source}")]
    Password {
        name: String,
        reference: String,
        #[source]
        source: steward_model::secret::SecretResolveError,
    },
    #[error("lab directory {name}: {what}")]
    Seed { name: String, what: String },
    #[error("lab directory {name}: certificate: {source}")]
    Pki {
        name: String,
        #[source]
        source: steward_pki::PkiError,
    },
    #[error("lab directory {name}: {}: {source}", path.display())]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab directory {name}: slapd did not listen on {addr} within {START_TIMEOUT:?} (its log: {})", log.display())]
    NotListening {
        name: String,
        addr: SocketAddr,
        log: PathBuf,
    },
}

/// Give the lab's directory a password the daemon can resolve: a generated one in
/// [`PASSWORD_ENV`] unless the user set it. Call while the process is single-threaded.
pub fn provide_password() {
    if std::env::var_os(PASSWORD_ENV).is_some() {
        return;
    }
    use rand::distr::{Alphanumeric, SampleString};
    let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
    // Single-threaded here (before the runtime starts): nothing reads the environment
    // concurrently. Lab agents and services get a minimal environment without it.
    std::env::set_var(PASSWORD_ENV, password);
}

/// One running slapd.
#[derive(Debug)]
struct Running {
    url: String,
    addr: SocketAddr,
    child: Child,
}

/// Where each lab directory listens, by ActiveDirectory name: what the controllers
/// connect to.
pub type DirectoryAddresses = Arc<RwLock<BTreeMap<String, SocketAddr>>>;

/// The lab's directories, by ActiveDirectory name.
#[derive(Debug)]
pub struct LabDirectories {
    dir: PathBuf,
    first: Ipv4Addr,
    addresses: DirectoryAddresses,
    running: BTreeMap<String, Running>,
}

impl LabDirectories {
    /// `dir`: where each directory's configuration, database and log live; `first`: the
    /// first lab server address (directories are numbered down from below it).
    pub fn new(dir: PathBuf, first: Ipv4Addr) -> Self {
        Self {
            dir,
            first,
            addresses: Arc::default(),
            running: BTreeMap::new(),
        }
    }

    pub fn addresses(&self) -> DirectoryAddresses {
        Arc::clone(&self.addresses)
    }

    /// Start a slapd for every ActiveDirectory of `snapshot` that has none for its URL
    /// yet. `desired` is the desired-state directory (for `file:` password references).
    /// A directory that cannot be started is reported and left down: the controllers say
    /// so in its status.
    pub async fn ensure(
        &mut self,
        snapshot: &Snapshot,
        desired: &Path,
        ca: &CertificateAuthority,
    ) -> Vec<LabDirectoryError> {
        let mut errors = Vec::new();
        for (index, (name, directory)) in snapshot.directories.iter().enumerate() {
            let Some(addr) = lab_address(self.first, index, &directory.server) else {
                errors.push(LabDirectoryError::NoRoom {
                    name: name.clone(),
                    first: self.first,
                });
                continue;
            };
            if self
                .running
                .get(name)
                .is_some_and(|r| r.url == directory.server && r.addr == addr)
            {
                continue;
            }
            if let Some(mut old) = self.running.remove(name) {
                stop(&mut old.child).await;
            }
            match self.start(name, directory, addr, desired, ca).await {
                Ok(child) => {
                    tracing::info!(
                        "lab directory {name}: slapd on {addr} for {} (standing in for Active Directory)",
                        directory.server
                    );
                    if let Ok(mut addresses) = self.addresses.write() {
                        addresses.insert(name.clone(), addr);
                    }
                    self.running.insert(
                        name.clone(),
                        Running {
                            url: directory.server.clone(),
                            addr,
                            child,
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Stop every slapd.
    pub async fn shutdown(&mut self) {
        for (_, mut running) in std::mem::take(&mut self.running) {
            stop(&mut running.child).await;
        }
    }

    async fn start(
        &self,
        name: &str,
        directory: &ActiveDirectory,
        addr: SocketAddr,
        desired: &Path,
        ca: &CertificateAuthority,
    ) -> Result<Child, LabDirectoryError> {
        let (Some(slapd), Some(slapadd)) = (find("slapd"), find("slapadd")) else {
            return Err(LabDirectoryError::NotInstalled {
                name: name.to_owned(),
            });
        };
        let password = directory.password_ref.resolve(desired).map_err(|source| {
            LabDirectoryError::Password {
                name: name.to_owned(),
                reference: directory.password_ref.to_string(),
                source,
            }
        })?;
        let seed = seed(directory).map_err(|what| LabDirectoryError::Seed {
            name: name.to_owned(),
            what,
        })?;
        let home = self.dir.join(name);
        let io = |path: &Path| {
            let path = path.to_owned();
            let name = name.to_owned();
            move |source| LabDirectoryError::Io { name, path, source }
        };
        let conf = home.join("slapd.conf");
        // A slapd a crashed daemon left on this configuration holds the port.
        stop_leftovers(&conf, "slapd", Duration::from_secs(5)).await;
        // A fresh database on every start: the lab begins from the desired state.
        let db = home.join("db");
        if db.exists() {
            std::fs::remove_dir_all(&db).map_err(io(&db))?;
        }
        std::fs::create_dir_all(&db).map_err(io(&db))?;
        let issued = ca
            .issue_agent(&url_host(&directory.server), &[addr.ip()])
            .map_err(|source| LabDirectoryError::Pki {
                name: name.to_owned(),
                source,
            })?;
        let (cert, key) =
            issued
                .write_pair(&home, "slapd")
                .map_err(|source| LabDirectoryError::Pki {
                    name: name.to_owned(),
                    source,
                })?;
        let text = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {home}/slapd.pid\n\
             TLSCertificateFile {cert}\n\
             TLSCertificateKeyFile {key}\n\
             sizelimit unlimited\n\
             database mdb\n\
             maxsize 104857600\n\
             suffix \"{suffix}\"\n\
             rootdn \"{account}\"\n\
             rootpw {password}\n\
             directory {db}\n",
            home = home.display(),
            cert = cert.display(),
            key = key.display(),
            suffix = suffix(&directory.domain),
            account = directory.account,
            password = password.expose(),
            db = db.display(),
        );
        write_private(&conf, text.as_bytes()).map_err(io(&conf))?;
        let ldif = home.join("seed.ldif");
        std::fs::write(&ldif, seed).map_err(io(&ldif))?;
        let log = home.join("slapd.log");
        let log_file = std::fs::File::create(&log).map_err(io(&log))?;
        // Like the lab agents: a minimal environment, never the daemon's secrets.
        let loaded = Command::new(&slapadd)
            .env_clear()
            .envs(steward_agent::minimal_environment())
            .args(["-q", "-f"])
            .arg(&conf)
            .arg("-l")
            .arg(&ldif)
            .stdout(std::process::Stdio::null())
            .stderr(log_file.try_clone().map_err(io(&log))?)
            .status()
            .await
            .map_err(io(&slapadd))?;
        if !loaded.success() {
            return Err(LabDirectoryError::Seed {
                name: name.to_owned(),
                what: format!("slapadd refused the seed ({loaded}); see {}", log.display()),
            });
        }
        let scheme = if directory.server.starts_with("ldaps:") {
            "ldaps"
        } else {
            "ldap"
        };
        let mut child = Command::new(&slapd)
            .env_clear()
            .envs(steward_agent::minimal_environment())
            .args(["-d", "0", "-f"])
            .arg(&conf)
            .arg("-h")
            .arg(format!("{scheme}://{addr}/"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(&slapd))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || tokio::time::Instant::now() > deadline {
                stop(&mut child).await;
                return Err(LabDirectoryError::NotListening {
                    name: name.to_owned(),
                    addr,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }
}

/// Where the `index`-th directory (in name order) listens: below `first`, counting down,
/// on the URL's port (plus 10000 below 1024, as the lab does for ADMIN's 443).
fn lab_address(first: Ipv4Addr, index: usize, url: &str) -> Option<SocketAddr> {
    let [a, b, c, d] = first.octets();
    let last = usize::from(d).checked_sub(index + 1).filter(|l| *l >= 1)?;
    let port = url
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok())?;
    let port = if port < 1024 { port + 10_000 } else { port };
    let ip = Ipv4Addr::new(a, b, c, u8::try_from(last).ok()?);
    Some(SocketAddr::new(IpAddr::V4(ip), port))
}

/// The host of `scheme://host:port` (the validated, normalized form).
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// `example.eng` -> `dc=example,dc=eng`.
fn suffix(domain: &str) -> String {
    domain
        .trim_end_matches('.')
        .split('.')
        .map(|l| format!("dc={l}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The LDIF that makes the directory what the ActiveDirectory expects: the domain, the
/// container (each of its levels), people, and every role group with its listed members.
fn seed(directory: &ActiveDirectory) -> Result<String, String> {
    let suffix = suffix(&directory.domain);
    let first = directory.domain.split('.').next().unwrap_or("lab");
    let mut ldif = format!(
        "dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\no: {first}\ndc: {first}\n\n"
    );
    let groups_base = match &directory.container {
        Some(container) => {
            let rdns: Vec<&str> = container.split(',').map(str::trim).collect();
            let within = rdns
                .len()
                .saturating_sub(directory.domain.split('.').count());
            // Parents first: the last RDNs above the domain, then down.
            for level in (0..within).rev() {
                let dn = rdns[level..].join(",");
                let (attr, value) = rdns[level].split_once('=').ok_or_else(|| {
                    format!("container level `{}` is not attr=value", rdns[level])
                })?;
                let class = if attr.eq_ignore_ascii_case("ou") {
                    "organizationalUnit"
                } else {
                    "organizationalRole"
                };
                ldif.push_str(&format!(
                    "dn: {dn}\nobjectClass: {class}\n{}: {value}\n\n",
                    attr.to_ascii_lowercase()
                ));
            }
            container.clone()
        }
        None => suffix.clone(),
    };
    let people = format!("ou=People,{suffix}");
    ldif.push_str(&format!(
        "dn: {people}\nobjectClass: organizationalUnit\nou: People\n\n"
    ));
    let members: BTreeMap<String, &Vec<String>> = directory
        .members
        .iter()
        .flatten()
        .map(|(g, m)| (g.to_lowercase(), m))
        .collect();
    let mut accounts: Vec<&String> = members.values().flat_map(|m| m.iter()).collect();
    accounts.sort();
    accounts.dedup();
    for account in accounts {
        plain(account)?;
        ldif.push_str(&format!(
            "dn: uid={account},{people}\nobjectClass: inetOrgPerson\nuid: {account}\ncn: {account}\nsn: {account}\n\n"
        ));
    }
    for group in directory.roles.values().flatten() {
        plain(group)?;
        ldif.push_str(&format!(
            "dn: cn={group},{groups_base}\nobjectClass: groupOfNames\ncn: {group}\n"
        ));
        match members.get(&group.to_lowercase()) {
            Some(listed) if !listed.is_empty() => {
                for account in listed.iter() {
                    ldif.push_str(&format!("member: uid={account},{people}\n"));
                }
            }
            // groupOfNames needs a member: the empty placeholder steward also uses.
            _ => ldif.push_str("member:\n"),
        }
        ldif.push('\n');
    }
    Ok(ldif)
}

/// Names the lab writes into LDIF and DNs unescaped.
fn plain(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
    {
        Ok(())
    } else {
        Err(format!(
            "`{name}`: the lab seeds only names of letters, digits, `-`, `_`, `.` and spaces"
        ))
    }
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

async fn stop(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> ActiveDirectory {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../desired-state");
        let compiled = steward_model::validate_dir(&dir).unwrap();
        let snapshot = compiled
            .snapshot
            .expect("the bundled desired state is valid");
        snapshot.directories.values().next().unwrap().clone()
    }

    #[test]
    fn the_bundled_directory_is_a_lab_one_and_its_seed_has_every_group_and_member() {
        let directory = bundled();
        let addr = lab_address(Ipv4Addr::new(127, 0, 0, 11), 0, &directory.server).unwrap();
        assert_eq!(addr, "127.0.0.10:10636".parse().unwrap());
        assert_eq!(url_host(&directory.server), "dc1.example.eng");
        let ldif = seed(&directory).unwrap();
        for group in directory.roles.values().flatten() {
            assert!(ldif.contains(&format!("cn: {group}\n")), "{group}\n{ldif}");
        }
        for (group, members) in directory.members.iter().flatten() {
            let entry = ldif
                .split("\n\n")
                .find(|e| e.contains(&format!("cn: {group}\n")))
                .unwrap();
            for m in members {
                assert!(
                    entry.contains(&format!("member: uid={m},ou=People,")),
                    "{entry}"
                );
            }
        }
        assert!(ldif.starts_with("dn: dc=example,dc=eng\n"), "{ldif}");
    }

    #[test]
    fn directories_are_numbered_down_from_below_the_first_server() {
        let first = Ipv4Addr::new(127, 0, 9, 11);
        let at = |i, url| lab_address(first, i, url).map(|a| a.to_string());
        assert_eq!(at(0, "ldap://dc1:389").as_deref(), Some("127.0.9.10:10389"));
        assert_eq!(at(1, "ldaps://dc2:3269").as_deref(), Some("127.0.9.9:3269"));
        assert_eq!(at(9, "ldaps://dc2:636").as_deref(), Some("127.0.9.1:10636"));
        assert_eq!(at(10, "ldaps://dc2:636"), None, "no .0");
        assert!(seed(&ActiveDirectory {
            roles: [(
                steward_model::snapshot::Role::Users,
                vec!["bad,name".to_owned()]
            )]
            .into(),
            ..bundled()
        })
        .is_err());
    }
}
