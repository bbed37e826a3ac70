//! A state directory as a daemon with `servers` lab servers leaves it: the CA, a server
//! certificate per server (written where the lab agents keep it) and the memo of them.

use std::fmt::Write as _;
use std::path::Path;

use steward_pki::CertificateAuthority;

pub fn fleet_state(dir: &Path, servers: usize) {
    let ca = CertificateAuthority::init(dir.join("ca")).unwrap();
    let mut memo = String::from("{");
    for i in 0..servers {
        let name = format!("app{i}");
        let host = format!("{name}.example.eng");
        let issued = ca
            .issue_server(
                std::slice::from_ref(&host),
                &[],
                std::time::Duration::from_secs(365 * 86_400),
            )
            .unwrap();
        let lab = dir.join("lab").join(&name);
        issued.write_pair(&lab.join("state/tls"), "server").unwrap();
        let psis = lab.join("state/services/PSIS");
        std::fs::create_dir_all(&psis).unwrap();
        std::fs::write(
            psis.join("install.json"),
            format!("{{\"port\":7001,\"n\":{i}}}"),
        )
        .unwrap();
        std::fs::write(
            psis.join("service.log"),
            "not state: logs are not backed up\n",
        )
        .unwrap();
        std::fs::write(lab.join("state/agent-state.json"), "{\"version\":1}").unwrap();
        if i > 0 {
            memo.push(',');
        }
        write!(
            memo,
            "\"{name}\":{{\"thumbprint\":\"{}\",\"sans\":[\"{host}\"]}}",
            issued.sha1_thumbprint
        )
        .unwrap();
    }
    memo.push('}');
    std::fs::write(dir.join("issued-certificates.json"), memo).unwrap();
}
