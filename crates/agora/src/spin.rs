//! `--spin`: poll a little before sleeping. A server's runtime thread that has just read a
//! frame keeps checking its sockets for a short window instead of blocking at once.
//!
//! Why: a call crosses three or four processes, and each hop wakes the next. Waking a
//! thread that sleeps costs the waker a system call and, when the sleeper's core has gone
//! idle, an interprocessor interrupt; on a virtual machine whose idle cores halt at once,
//! that interrupt exits to the hypervisor, and the round trip between two processes grows
//! from a few microseconds to tens (docs/performance.md). A thread still polling when its
//! next frame arrives needs no wake-up at all. Kernels do the same for idle cores
//! (halt-polling), and runtimes such as Go's for idle threads (spinning before parking).
//!
//! How: just before the runtime would block waiting for events, its park hook looks at
//! [`agora_proto::frames_read`]. If a frame came in within the window, the hook yields the
//! core to any other runnable thread (`sched_yield`) and then wakes a do-nothing task, so
//! that the runtime polls its sockets without blocking, runs what they woke, and comes back
//! to the hook. If that yield took long, another thread needed the core: polling stops
//! until the next frame. The cost: up to one window of CPU after each frame, per server.
//! It is off by default because on a machine with few cores the polling threads also
//! delay the ones with work (scenario 2 of the bench loses ~10 %).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A yield that took longer than this means another thread ran on our core.
const CONTENDED: Duration = Duration::from_micros(20);

/// When to poll rather than sleep.
#[derive(Debug)]
struct Window {
    length: Duration,
    /// Frames the process had read when last asked.
    frames: u64,
    /// Poll instead of sleeping until then.
    until: Instant,
}

impl Window {
    fn new(length: Duration, now: Instant) -> Self {
        Window { length, frames: 0, until: now }
    }

    /// Whether to poll once more at `now`, the process having read `frames` so far.
    fn poll(&mut self, now: Instant, frames: u64) -> bool {
        if frames != self.frames {
            self.frames = frames;
            self.until = now + self.length;
        }
        now < self.until
    }

    /// Another thread needed the core: sleep at the next chance, until a new frame.
    fn contended(&mut self, now: Instant) {
        self.until = now;
    }
}

/// The do-nothing task the park hook wakes to keep the runtime polling.
pub struct Spin {
    wake: Option<Arc<Notify>>,
}

impl Spin {
    /// Installs the park hook on `builder`: poll for `window` after each frame (zero:
    /// never). Call [`Spin::start`] inside the built runtime.
    pub fn install(builder: &mut tokio::runtime::Builder, window: Duration) -> Spin {
        if window.is_zero() {
            return Spin { wake: None };
        }
        let wake = Arc::new(Notify::new());
        let notify = wake.clone();
        let state = Mutex::new(Window::new(window, Instant::now()));
        builder.on_thread_park(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if !state.poll(now, agora_proto::frames_read()) {
                return;
            }
            std::thread::yield_now();
            if now.elapsed() > CONTENDED {
                state.contended(now);
                return;
            }
            // Work for the runtime, so that it polls instead of blocking.
            notify.notify_one();
        });
        Spin { wake: Some(wake) }
    }

    /// Spawns the task the hook wakes.
    pub fn start(self) {
        if let Some(wake) = self.wake {
            tokio::spawn(async move {
                loop {
                    wake.notified().await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(200);

    #[test]
    fn polls_for_a_window_after_each_frame_then_sleeps() {
        let t0 = Instant::now();
        let mut w = Window::new(WINDOW, t0);
        assert!(!w.poll(t0, 0), "no frame yet: sleep");
        assert!(w.poll(t0, 1), "a frame: poll");
        assert!(w.poll(t0 + WINDOW / 2, 1));
        assert!(!w.poll(t0 + WINDOW, 1), "the window has passed with no new frame");
        assert!(w.poll(t0 + WINDOW * 3, 2), "a new frame opens a new window");
        assert!(w.poll(t0 + WINDOW * 3 + WINDOW / 2, 2));
    }

    #[test]
    fn contention_stops_polling_until_the_next_frame() {
        let t0 = Instant::now();
        let mut w = Window::new(WINDOW, t0);
        assert!(w.poll(t0, 1));
        w.contended(t0 + WINDOW / 4);
        assert!(!w.poll(t0 + WINDOW / 4, 1));
        assert!(!w.poll(t0 + WINDOW / 2, 1), "still inside the old window, but yielded");
        assert!(w.poll(t0 + WINDOW / 2, 2), "a new frame");
    }
}
