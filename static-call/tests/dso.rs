//! Static calls in `dlopen`ed shared objects: two copies of a plugin (`examples/dso_fixture.rs`, a
//! `cdylib` with its own copy of the patcher) are loaded, patched while their sites run, and closed
//! again and again while this executable's own key is updated and called without pause. Every copy
//! shares the process's one text lock and one SIGTRAP handler ([`callpatch_patcher::hub`]): before it,
//! the second copy's handler replaced the first's (whose next update was then refused), and after a
//! `dlclose` the disposition pointed into unmapped text.
//!
//! Each order of initialisation runs in a child process (this test binary again), because the handler
//! is installed once per process: the executable first, or a plugin first (which then stays mapped,
//! pinned, because its code is the handler).

use std::ffi::{c_void, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpatch_static_call::{static_call_update, Backend};

mod common;
use common::scale::{call_until, double, triple, SCALE};
use common::stop::StopOnDrop;

/// The fixture, built now by the same cargo that runs this test (so a `cargo test --test dso` never
/// loads a stale one), into its own target directory: the outer cargo may still hold the lock on ours.
fn fixture() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let target = profile_dir.parent().unwrap().join("dso-fixture");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "-p", "callpatch-static-call", "--example", "dso_fixture", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} to build the fixture: {e}"));
    assert!(out.status.success(), "building the fixture failed:\n{}", String::from_utf8_lossy(&out.stderr));
    target.join("debug/examples/libdso_fixture.so")
}

fn in_child(test: &str) {
    print!("{}", String::from_utf8_lossy(&common::child::passes(test).stdout));
}

#[test]
fn plugins_loaded_after_the_executable_patched_and_closed_under_running_updates() {
    in_child("child_executable_first");
}

#[test]
fn a_plugin_initialised_first_owns_the_handler_and_stays_loaded() {
    in_child("child_plugin_first");
}

#[test]
#[ignore = "run by a test above in a child process: the SIGTRAP handler is one per process"]
fn child_executable_first() {
    run(false);
}

#[test]
#[ignore = "run by a test above in a child process: the SIGTRAP handler is one per process"]
fn child_plugin_first() {
    run(true);
}

/// One loaded copy of the fixture, through its C ABI.
struct Plugin {
    handle: *mut c_void,
    call: extern "C" fn(u64) -> u64,
    set: extern "C" fn(u32) -> i32,
    init: extern "C" fn() -> u32,
    calls_direct: extern "C" fn() -> u32,
    traps: extern "C" fn() -> u64,
}

// SAFETY: the handle and fn pointers are plain addresses; the plugin's functions are thread-safe.
unsafe impl Send for Plugin {}
// SAFETY: as for Send: shared use only calls the plugin's functions, which are thread-safe.
unsafe impl Sync for Plugin {}

impl Plugin {
    fn open(path: &std::path::Path) -> Plugin {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: dlopen of a path we built; the fixture's constructors are Rust's own.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen {}: {:?}", path.display(), unsafe {
            // SAFETY: dlerror returns a C string after a failed dlopen.
            std::ffi::CStr::from_ptr(libc::dlerror())
        });
        let sym = |name: &str| {
            let n = CString::new(name).unwrap();
            // SAFETY: a symbol lookup in a handle we hold.
            let p = unsafe { libc::dlsym(handle, n.as_ptr()) };
            assert!(!p.is_null(), "{name} not exported by the fixture");
            p
        };
        // SAFETY: each symbol is the fixture's `extern "C" fn` of exactly this type.
        unsafe {
            Plugin {
                handle,
                call: std::mem::transmute::<*mut c_void, extern "C" fn(u64) -> u64>(sym("fixture_call")),
                set: std::mem::transmute::<*mut c_void, extern "C" fn(u32) -> i32>(sym("fixture_set")),
                init: std::mem::transmute::<*mut c_void, extern "C" fn() -> u32>(sym("fixture_init")),
                calls_direct: std::mem::transmute::<*mut c_void, extern "C" fn() -> u32>(sym("fixture_calls_direct")),
                traps: std::mem::transmute::<*mut c_void, extern "C" fn() -> u64>(sym("fixture_traps")),
            }
        }
    }

    /// Initialises the plugin's static calls (they must come up inline, int3-patched) and runs `rounds`
    /// updates while a thread calls its site; returns the calls that reached no target.
    fn exercise(&self, rounds: u32) -> u64 {
        assert_eq!((self.init)(), 1, "the plugin's static calls did not come up inline (see stderr)");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            let caller = s.spawn(|| {
                let mut wrong = 0;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 1000 {
                    let y = (self.call)(7);
                    if y != 8 && y != 21 && y != 0 {
                        wrong += 1;
                    }
                    n += 1;
                }
                wrong
            });
            for i in 0..rounds {
                assert_eq!((self.set)(i % 3), 0, "a plugin update failed (see stderr)");
                assert_eq!((self.call)(7), [8, 21, 0][(i % 3) as usize]);
            }
            assert_eq!((self.set)(1), 0);
            assert_eq!((self.calls_direct)(), 1, "the plugin's site is not a direct call within the plugin");
            stop.store(true, Ordering::Relaxed);
            caller.join().unwrap()
        })
    }

    fn close(self) {
        // SAFETY: no thread runs the plugin's code any more (its caller was joined).
        assert_eq!(unsafe { libc::dlclose(self.handle) }, 0);
    }
}

/// Whether `path` is mapped in this process now.
fn mapped(path: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/maps").unwrap().contains(path.to_str().unwrap())
}

/// Runs `f` on a thread of its own: glibc defers unloading an object while a live thread holds
/// thread-local destructors registered by it (the plugin's Rust std does), so a plugin used only on
/// such a thread is unmapped by its `dlclose`.
fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

fn run(plugin_first: bool) {
    // Two copies of one plugin: two paths are two objects, each with its own patcher.
    let dir = tempfile::Builder::new().prefix("callpatch-dso-").tempdir().unwrap();
    let built = fixture();
    let paths = ["a", "b"].map(|n| {
        let p = dir.path().join(format!("libdso_fixture_{n}.so"));
        std::fs::copy(&built, &p).unwrap();
        p
    });
    // Plugin first: both plugins initialise at once, before the executable; one creates the hub and
    // installs the handler, and so stays mapped when closed; the other is unmapped.
    let resident = plugin_first.then(|| {
        let both = std::sync::Barrier::new(2);
        let plugins = std::thread::scope(|s| {
            let open = |path| {
                let both = &both;
                s.spawn(move || {
                    let p = Plugin::open(path);
                    both.wait();
                    assert_eq!(p.exercise(10), 0);
                    p
                })
            };
            let (a, b) = (open(&paths[0]), open(&paths[1]));
            [a.join().unwrap(), b.join().unwrap()]
        });
        for p in plugins {
            p.close();
        }
        let still: Vec<_> = paths.iter().filter(|p| mapped(p)).collect();
        assert_eq!(still.len(), 1, "exactly the handler's owner stays mapped: {still:?}");
        (still[0].clone(), Plugin::open(still[0]))
    });
    assert_eq!(callpatch_static_call::init(), Backend::Inline, "{:?}", callpatch_static_call::status());

    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let updates = AtomicU64::new(0);
    let wrong = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let caller = s.spawn(|| call_until(&stop, &calls));
        // The executable's own key, updated without pause: every update races the loads and closes.
        let updater = s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if i.is_multiple_of(2) {
                    static_call_update!(SCALE, triple).unwrap();
                } else {
                    static_call_update!(SCALE, double).unwrap();
                }
                i += 1;
                updates.store(i, Ordering::Relaxed);
            }
        });
        // The resident plugin, updated and called without pause too.
        let resident_work = resident.as_ref().map(|(_, p)| {
            s.spawn(|| {
                let mut wrong = 0;
                while !stop.load(Ordering::Relaxed) {
                    wrong += p.exercise(3);
                }
                wrong
            })
        });
        let mut wrong_in_plugins = 0;
        let mut plugin_traps = 0;
        for round in 0..20 {
            let which = &paths[round % 2];
            if resident.as_ref().is_some_and(|(path, _)| path == which) {
                continue;
            }
            let before = updates.load(Ordering::Relaxed);
            let plugin = on_own_thread(|| {
                let plugin = Plugin::open(which);
                if round < 2 {
                    let far = (plugin.call as usize).abs_diff(common::scale::scale as *const () as usize);
                    println!(
                        "plugin {round} lies {:.1} GiB from the executable's text",
                        far as f64 / (1u64 << 30) as f64
                    );
                }
                wrong_in_plugins += plugin.exercise(30);
                plugin_traps += (plugin.traps)();
                plugin
            });
            plugin.close();
            assert!(!mapped(which), "{} is still mapped after dlclose", which.display());
            // Wait for an update of the executable's key after the close, so closes race updates.
            while updates.load(Ordering::Relaxed) < before + 2 {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        updater.join().unwrap();
        println!("closed plugins' sites trapped {plugin_traps} times, through another copy's handler or their own");
        caller.join().unwrap() + wrong_in_plugins + resident_work.map_or(0, |w| w.join().unwrap())
    });
    assert_eq!(wrong, 0, "calls that reached no target");
    // No update was lost to a racing dlclose: the last one (odd count: triple) is what the site calls.
    let n = updates.load(Ordering::Relaxed);
    assert_eq!(common::scale::scale(5), if n % 2 == 1 { 15 } else { 10 }, "after {n} updates");
    assert!(calls.load(Ordering::Relaxed) > 0 && n >= 20);
    println!("the executable's sites trapped {} times", callpatch_patcher::trap_count());
    if let Some((path, p)) = resident {
        p.close();
        assert!(mapped(&path), "the plugin whose handler is installed was unmapped");
        // The executable's copy is still registered with the plugin's handler.
        assert_eq!(callpatch_patcher::hub::other_copies(), 1);
    } else {
        // Every plugin withdrew from the executable's handler when it was closed.
        assert_eq!(callpatch_patcher::hub::other_copies(), 0);
    }
    println!(
        "{} executable calls, {n} updates of its key while plugins came and went; 0 wrong",
        calls.load(Ordering::Relaxed),
    );
}
