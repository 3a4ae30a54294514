//! Process-wide properties: no key or token in any log line (ours or devhub's, at TRACE), and
//! the core's runtime threads are gone once the last client is dropped. (Against an external
//! devhub — cross targets, see common/mod.rs — only the core's log lines are captured here.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{manifest, next_input, Hub};
use edgemodule::Message;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "edgemodule-rt")
        .count()
}

/// Windows (wine included): this process's threads whose description (std sets it from the
/// thread name through SetThreadDescription) is the core's.
#[cfg(windows)]
fn runtime_threads() -> usize {
    use std::ffi::c_void;
    #[repr(C)]
    struct ThreadEntry32 {
        size: u32,
        usage: u32,
        thread_id: u32,
        owner_pid: u32,
        base_pri: i32,
        delta_pri: i32,
        flags: u32,
    }
    type GetDesc = unsafe extern "system" fn(*mut c_void, *mut *mut u16) -> i32;
    #[link(name = "kernel32")]
    extern "system" {
        fn CreateToolhelp32Snapshot(flags: u32, pid: u32) -> *mut c_void;
        fn Thread32First(snap: *mut c_void, e: *mut ThreadEntry32) -> i32;
        fn Thread32Next(snap: *mut c_void, e: *mut ThreadEntry32) -> i32;
        fn OpenThread(access: u32, inherit: i32, tid: u32) -> *mut c_void;
        fn CloseHandle(h: *mut c_void) -> i32;
        fn GetCurrentProcessId() -> u32;
        fn LocalFree(p: *mut c_void) -> *mut c_void;
        fn GetModuleHandleA(name: *const std::ffi::c_char) -> *mut c_void;
        fn GetProcAddress(m: *mut c_void, name: *const std::ffi::c_char) -> *mut c_void;
    }
    const TH32CS_SNAPTHREAD: u32 = 0x4;
    const THREAD_QUERY_LIMITED_INFORMATION: u32 = 0x0800;
    // SAFETY: plain Win32 calls on handles we own, closed before returning; the description
    // is a NUL-terminated UTF-16 string we free with LocalFree as documented.
    unsafe {
        let k32 = GetModuleHandleA(c"kernel32.dll".as_ptr());
        let f = GetProcAddress(k32, c"GetThreadDescription".as_ptr());
        assert!(!f.is_null(), "GetThreadDescription is missing");
        let get_desc: GetDesc = std::mem::transmute(f);
        let snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
        assert!(snap as isize != -1, "CreateToolhelp32Snapshot failed");
        let me = GetCurrentProcessId();
        let mut e = ThreadEntry32 {
            size: std::mem::size_of::<ThreadEntry32>() as u32,
            usage: 0,
            thread_id: 0,
            owner_pid: 0,
            base_pri: 0,
            delta_pri: 0,
            flags: 0,
        };
        let mut count = 0;
        let mut more = Thread32First(snap, &mut e) != 0;
        while more {
            if e.owner_pid == me {
                let h = OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, e.thread_id);
                if !h.is_null() {
                    let mut p: *mut u16 = std::ptr::null_mut();
                    if get_desc(h, &mut p) >= 0 && !p.is_null() {
                        let len = (0..).take_while(|&i| *p.add(i) != 0).count();
                        let name = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
                        if name == "edgemodule-rt" {
                            count += 1;
                        }
                        LocalFree(p.cast());
                    }
                    CloseHandle(h);
                }
            }
            more = Thread32Next(snap, &mut e) != 0;
        }
        CloseHandle(snap);
        count
    }
}

#[test]
fn no_secret_in_logs_and_runtime_joins_when_last_client_drops() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .init();
    // devhub runs on the test's own runtime; the clients on the core's.
    let test_rt = tokio::runtime::Runtime::new().unwrap();
    let key = test_rt.block_on(async {
        let route = (
            "ab",
            "FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint(\"/modules/b/inputs/i\")",
        );
        let hub = Hub::start(&manifest(&["a", "b"], &[route], serde_json::json!({}))).await;
        let key = hub.dh().module_key("a").unwrap();
        let a = hub.connected("a").await;
        let b = hub.connected("b").await;
        a.send_message_to_output("o", Message::new(b"x".to_vec()))
            .await
            .unwrap();
        next_input(&b, Duration::from_secs(10)).await;
        // The count below can see the core's threads at all (their name is set).
        assert!(
            runtime_threads() > 0,
            "the core's runtime threads are visible"
        );
        // A refused connection logs too: make sure that path is clean as well.
        let cs = hub
            .dh()
            .connection_string("a")
            .unwrap()
            .replace(&key, "AAAA");
        let bad = edgemodule::ModuleClient::from_connection_string(&cs, hub.options()).unwrap();
        assert!(bad.connect().await.is_err());
        a.close().await;
        b.close().await;
        drop((a, b, bad));
        key
    });
    drop(test_rt);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edgemodule::runtime::users(), 0);
    assert_eq!(
        runtime_threads(),
        0,
        "the core's runtime threads were joined"
    );

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.len() > 1000, "trace logging was captured");
    assert!(!logs.contains(&key), "a module key leaked into the logs");
    assert!(
        !logs.contains("SharedAccessSignature sr="),
        "a token leaked"
    );
    assert!(!logs.contains("sig="), "a signature leaked");
}
