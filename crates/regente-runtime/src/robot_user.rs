//! OS users robots run as (`--robot-user`), so that a robot cannot read the
//! agent's journal and keys, change the package cache, or read another robot's
//! files and environment.
//!
//! The agent keeps a pool: a running robot has a user of its own, and a user
//! goes back to the pool only once its robot has ended and every process left
//! under that user has been killed ([`sweep`]). Two robots running at once never
//! share a user, so the agent runs at most as many robots as it has users.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// Whether the agent can switch robots to other users.
pub fn agent_is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A user robots may run as, resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, as `initgroups` would set them.
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

impl RobotUser {
    /// Looks `name` up in the user database. The agent must be able to switch
    /// to it: it runs as root.
    pub fn resolve(name: &str) -> Result<RobotUser, String> {
        let c_name =
            CString::new(name).map_err(|_| format!("the user name {name:?} holds a NUL byte"))?;
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let mut buffer = vec![0 as libc::c_char; 16 * 1024];
        let code = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if code != 0 || found.is_null() {
            return Err(format!("there is no user {name:?} on this machine"));
        }
        if entry.pw_uid == 0 {
            return Err(format!(
                "the robot user {name:?} is root: robots would not be fenced at all"
            ));
        }
        let home = unsafe { CStr::from_ptr(entry.pw_dir) }
            .to_string_lossy()
            .into_owned();
        let groups = supplementary_groups(&c_name, entry.pw_gid);
        Ok(RobotUser {
            name: name.to_owned(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            groups,
            home: PathBuf::from(home),
        })
    }

    /// What the guard needs to become this user.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }
}

fn supplementary_groups(name: &CStr, gid: libc::gid_t) -> Vec<u32> {
    let mut count: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let asked = count;
        let found =
            unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if found >= 0 {
            groups.truncate(found as usize);
            return groups;
        }
        if count <= asked {
            return vec![gid];
        }
    }
}

/// The identity a robot's process takes before its program is executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Credentials {
    /// `uid:gid:g1,g2,...`, the form the guard's command carries.
    pub fn encode(&self) -> String {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        format!("{}:{}:{}", self.uid, self.gid, groups.join(","))
    }

    pub fn decode(text: &str) -> Option<Credentials> {
        let mut parts = text.split(':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        let groups = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|g| g.parse().ok())
                .collect::<Option<Vec<u32>>>()?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Credentials { uid, gid, groups })
    }

    /// Becomes this user: groups, then group, then user (after which nothing
    /// can be changed back). For a process about to execute a robot, between
    /// fork and exec: only system calls.
    ///
    /// # Safety
    /// Changes the identity of the whole process.
    pub unsafe fn assume(&self) -> std::io::Result<()> {
        let check = |code: libc::c_int| {
            if code == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        check(libc::setgroups(
            self.groups.len() as _,
            self.groups.as_ptr() as *const libc::gid_t,
        ))?;
        check(libc::setgid(self.gid))?;
        check(libc::setuid(self.uid))?;
        // Refuse to run a robot that could get root back.
        if libc::setuid(0) == 0 {
            return Err(std::io::Error::other("could not drop root"));
        }
        Ok(())
    }
}

/// Kills every process of the user (a robot's leftovers, wherever they moved
/// to): a process of that user sends SIGKILL to all the processes it may
/// signal, itself last. Only for users of the agent's pool, which run nothing
/// else.
pub fn sweep(user: &RobotUser) {
    use std::os::unix::process::CommandExt;
    for _ in 0..2 {
        let mut command = std::process::Command::new("/bin/true");
        command
            .uid(user.uid)
            .gid(user.gid)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        unsafe {
            command.pre_exec(|| {
                libc::kill(-1, libc::SIGKILL);
                Ok(())
            });
        }
        if let Ok(mut child) = command.spawn() {
            let _ = child.wait();
        }
    }
}

/// The pool of robot users: each running robot holds one.
#[derive(Debug, Default)]
pub struct Pool {
    users: Vec<RobotUser>,
    busy: Vec<bool>,
}

impl Pool {
    pub fn new(users: Vec<RobotUser>) -> Pool {
        let busy = vec![false; users.len()];
        Pool { users, busy }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// A free user, now held; `None` when every user runs a robot.
    pub fn take(&mut self) -> Option<RobotUser> {
        let free = self.busy.iter().position(|busy| !busy)?;
        self.busy[free] = true;
        Some(self.users[free].clone())
    }

    /// Gives a user back (its processes already swept).
    pub fn give_back(&mut self, user: &RobotUser) {
        if let Some(at) = self.users.iter().position(|u| u.uid == user.uid) {
            self.busy[at] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_through_the_guard_command_unchanged() {
        for credentials in [
            Credentials {
                uid: 1001,
                gid: 1002,
                groups: vec![1002, 27, 100],
            },
            Credentials {
                uid: 5,
                gid: 5,
                groups: vec![],
            },
        ] {
            assert_eq!(
                Credentials::decode(&credentials.encode()),
                Some(credentials)
            );
        }
        for garbage in ["", "1", "1:2", "a:2:", "1:2:x", "1:2:3:4", "1:2:3,,4"] {
            assert_eq!(Credentials::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn root_and_unknown_users_are_refused() {
        assert!(RobotUser::resolve("root").unwrap_err().contains("root"));
        assert!(RobotUser::resolve("no-such-user-regente")
            .unwrap_err()
            .contains("no user"));
    }

    #[test]
    fn a_pool_never_hands_one_user_to_two_robots() {
        let user = |uid| RobotUser {
            name: format!("u{uid}"),
            uid,
            gid: uid,
            groups: vec![],
            home: "/".into(),
        };
        let mut pool = Pool::new(vec![user(1), user(2)]);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a.uid, b.uid);
        assert_eq!(pool.take(), None);
        pool.give_back(&a);
        assert_eq!(pool.take(), Some(a));
    }
}
