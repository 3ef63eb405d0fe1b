//! The process metrics every Prometheus client library exports
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), read
//! from Linux's `/proc/self` at scrape time. Elsewhere there are none.

/// What `/proc/self` says of the process; `None` where it could not be read.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat`: USER_HZ, which the kernel
/// fixes at 100 for user space on every architecture Linux supports.
const USER_HZ: f64 = 100.0;

impl Process {
    /// Reads `/proc/self`.
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let system = std::fs::read_to_string("/proc/stat").ok();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        let mut process = Self::parse(
            stat.as_deref().unwrap_or(""),
            status.as_deref().unwrap_or(""),
            limits.as_deref().unwrap_or(""),
            system.as_deref().unwrap_or(""),
        );
        process.open_fds = open_fds;
        process
    }

    /// The figures in the texts of `/proc/self/{stat,status,limits}` and
    /// `/proc/stat`.
    fn parse(stat: &str, status: &str, limits: &str, system: &str) -> Self {
        // The command name, in parentheses, may hold spaces: the fields
        // are counted after its closing parenthesis (field 3 is the state).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) as f64 / USER_HZ),
            _ => None,
        };
        let kib = |key: &str| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.trim().strip_suffix("kB")?;
                value.trim().parse::<u64>().ok().map(|k| k * 1024)
            })
        };
        let threads = status.lines().find_map(|line| {
            line.strip_prefix("Threads:")
                .and_then(|v| v.trim().parse().ok())
        });
        let max_fds = limits.lines().find_map(|line| {
            let soft = line
                .strip_prefix("Max open files")?
                .split_whitespace()
                .next()?;
            soft.parse().ok()
        });
        // Field 22: the start, in ticks since boot; /proc/stat's btime: the
        // boot, in seconds since the epoch.
        let boot = system.lines().find_map(|line| {
            line.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        let start_time = match (boot, field(22)) {
            (Some(boot), Some(ticks)) => Some(boot as f64 + ticks as f64 / USER_HZ),
            _ => None,
        };
        Self {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds: None,
            max_fds,
            threads,
            start_time,
        }
    }

    /// The exposition of what was read.
    pub fn render(&self, out: &mut String) {
        let families: [(&str, &str, &str, Option<f64>); 7] = [
            (
                "process_cpu_seconds_total",
                "User and system CPU time spent, in seconds.",
                "counter",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                self.resident_bytes.map(|b| b as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                "gauge",
                self.virtual_bytes.map(|b| b as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                "gauge",
                self.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "The limit of open file descriptors.",
                "gauge",
                self.max_fds.map(|n| n as f64),
            ),
            (
                "process_threads",
                "Threads of the process.",
                "gauge",
                self.threads.map(|n| n as f64),
            ),
            (
                "process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch.",
                "gauge",
                self.start_time,
            ),
        ];
        for (name, help, kind, value) in families {
            if let Some(value) = value {
                super::header(out, name, help, kind);
                super::sample(out, name, &[], value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_are_read_field_by_field() {
        // A command name with a space and a parenthesis, as comm allows.
        let stat = "4242 (agentca (x) y) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 130 0 0 20 0 9 0 123 456 789";
        let status = "Name:\tagentca\nVmSize:\t  123456 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let p = Process::parse(stat, status, limits, "cpu  1 2 3\nbtime 1700000000\n");
        assert_eq!(p.cpu_seconds, Some(3.8));
        assert_eq!(p.resident_bytes, Some(20480 * 1024));
        assert_eq!(p.virtual_bytes, Some(123456 * 1024));
        assert_eq!(p.threads, Some(9));
        assert_eq!(p.max_fds, Some(1024));
        let mut out = String::new();
        p.render(&mut out);
        assert!(out.contains("process_cpu_seconds_total 3.8\n"));
        assert!(out.contains("process_start_time_seconds 1700000001.23\n"));
        assert!(!out.contains("process_open_fds"), "unread, so absent");
    }

    #[test]
    fn unreadable_proc_gives_nothing() {
        let p = Process::parse("", "", "", "");
        assert_eq!(p, Process::default());
        let mut out = String::new();
        p.render(&mut out);
        assert_eq!(out, "");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_is_read() {
        let p = Process::read();
        assert!(p.cpu_seconds.is_some() && p.resident_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() >= 3 && p.max_fds.is_some());
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        let started = p.start_time.unwrap();
        assert!(started <= now + 1.0 && started > now - 86400.0 * 365.0);
    }
}
