//! The machine's processes as `/proc` shows them, for tests that look for what they
//! started (a lab's agents and services, a peer) by its command line.

/// Every live process with a command line: its pid and arguments. Zombies and kernel
/// threads (no command line) are left out, and so is a process that ends while it is read.
pub fn command_lines() -> Vec<(i32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            (!args.is_empty()).then_some((pid, args))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_test_is_among_the_command_lines() {
        let me = std::process::id() as i32;
        let found = super::command_lines();
        let (_, args) = found
            .iter()
            .find(|(pid, _)| *pid == me)
            .expect("this process");
        let exe = std::env::args().next().unwrap();
        assert_eq!(args[0], exe);
    }
}
