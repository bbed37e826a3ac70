use crate::api::HostInfo;

/// Describe this host. `hostname` overrides the system's name, for lab agents that stand
/// in for differently named servers on one machine.
pub(crate) fn host_info(hostname: Option<&str>) -> HostInfo {
    let hostname = hostname.map(str::to_owned).unwrap_or_else(system_hostname);
    HostInfo {
        computer_name: computer_name(&hostname),
        hostname,
        os: os_description(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

pub(crate) fn system_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Windows computer (NetBIOS) names are the first label, uppercase, at most 15 characters.
fn computer_name(hostname: &str) -> String {
    hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .take(15)
        .collect::<String>()
        .to_uppercase()
}

fn os_description() -> String {
    let uname = rustix::system::uname();
    let kernel = format!(
        "{} {} {}",
        uname.sysname().to_string_lossy(),
        uname.release().to_string_lossy(),
        uname.machine().to_string_lossy()
    );
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        });
    match pretty {
        Some(name) => format!("{name} ({kernel})"),
        None => kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computer_name_is_netbios_style() {
        assert_eq!(computer_name("app1.example.eng"), "APP1");
        assert_eq!(computer_name("a-very-long-host-name.x"), "A-VERY-LONG-HOS");
        let info = host_info(Some("app1.example.eng"));
        assert_eq!(info.hostname, "app1.example.eng");
        assert!(!info.os.is_empty());
        assert!(!host_info(None).hostname.is_empty());
    }
}
