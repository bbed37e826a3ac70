//! Reading `show stat` (CSV with a `# pxname,svname,...` header).

use serde::Serialize;

/// A member as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MemberState {
    Up,
    Down,
    Drain,
    Maint,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    pub backend: String,
    pub server: String,
    pub state: MemberState,
    /// HAProxy's own words (`UP 1/2`, `DOWN`, `MAINT`, `no check`).
    pub status: String,
    /// Current sessions (`scur`): what a drain waits for to reach zero.
    pub sessions: u64,
}

/// Servers only (not the FRONTEND/BACKEND summary rows). Columns are found by name, so a
/// later HAProxy adding columns reads the same.
pub fn parse_stat(csv: &str) -> Vec<ServerStat> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let col = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return Vec::new();
    };
    let scur = col("scur");
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let server = *fields.get(sv)?;
            if server == "FRONTEND" || server == "BACKEND" {
                return None;
            }
            let status = fields.get(st)?.to_string();
            Some(ServerStat {
                backend: fields.get(px)?.to_string(),
                server: server.to_owned(),
                state: state_of(&status),
                status,
                sessions: scur
                    .and_then(|c| fields.get(c))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            })
        })
        .collect()
}

fn state_of(status: &str) -> MemberState {
    // `UP 1/3` is up and going down; `DOWN 1/2` is down and coming up.
    if status.starts_with("MAINT") {
        MemberState::Maint
    } else if status.starts_with("DRAIN") || status.starts_with("NOLB") {
        MemberState::Drain
    } else if status.starts_with("UP") || status == "no check" {
        MemberState::Up
    } else {
        MemberState::Down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_their_states() {
        let csv = "# pxname,svname,qcur,status,weight\npsis,FRONTEND,,OPEN,\npsis,app1,0,UP,1\npsis,app2,0,DOWN 1/2,1\npsis,app3,0,MAINT (resolution),1\npsis,app4,0,DRAIN,1\npsis,app5,0,UP 1/3,1\npsis,BACKEND,0,UP,2\n";
        let got: Vec<(String, MemberState)> = parse_stat(csv)
            .into_iter()
            .map(|s| (s.server, s.state))
            .collect();
        assert_eq!(
            got,
            [
                ("app1".into(), MemberState::Up),
                ("app2".into(), MemberState::Down),
                ("app3".into(), MemberState::Maint),
                ("app4".into(), MemberState::Drain),
                ("app5".into(), MemberState::Up),
            ]
        );
        assert!(parse_stat("garbage").is_empty());
    }

    #[test]
    fn current_sessions_of_each_server() {
        let csv = "# pxname,svname,scur,status\npsws,app1,3,DRAIN\npsws,app2,0,UP\npsws,app3,,UP\n";
        let got: Vec<u64> = parse_stat(csv).into_iter().map(|s| s.sessions).collect();
        assert_eq!(got, [3, 0, 0]);
    }
}
