//! The bounded channel between two subtasks: a queue of at most `capacity` elements (batches,
//! barriers, end markers) that a sender waits on when it is full.
//!
//! An all-to-all edge at parallelism `p` has `p²` channels, almost all of them idle, so a
//! channel costs only its shared header until something is sent: the queue allocates on the
//! first element and gives its memory back when it drains. (A preallocated channel per pair,
//! as tokio's `mpsc` makes, took 9 GiB at `p = 2000` before a record moved.)
//!
//! Closing follows tokio's `mpsc`: the receiver sees the end (`None`, or `Disconnected`) once
//! every sender is dropped and the queue is empty; a send fails, giving the element back, once
//! the receiver is dropped, and elements still queued then are dropped with it.
//!
//! It must behave the same under simulation: no threads, no timers, no randomness. Waiting
//! senders are woken in the order they started waiting, so wake order is a function of the
//! order of calls, and the seed's scheduler alone decides what runs next.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Creates a channel that holds at most `capacity` elements.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity >= 1, "a channel needs room for at least one element");
    let capacity = u32::try_from(capacity).expect("channel capacities are bounded by the configuration");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity,
            senders: 1,
            receiver_alive: true,
            receiver_waker: None,
            waiting_senders: Vec::new(),
        }),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Allocated on the first element, released whenever it drains.
    queue: VecDeque<T>,
    /// Counts in 32 bits keep an idle channel's header at 112 bytes: `p²` of them exist.
    capacity: u32,
    senders: u32,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    /// Senders waiting for room, in the order they started waiting.
    waiting_senders: Vec<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The lock is never held across user code, so a poisoned lock only means another
        // thread panicked elsewhere; the queue itself is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakers taken under the lock and woken after it is released, so that a woken task does
/// not find the lock still held (on another thread, it would have to wait for it).
#[derive(Default)]
struct Wake {
    receiver: Option<Waker>,
    senders: Vec<Waker>,
}

impl Wake {
    fn now(self) {
        if let Some(waker) = self.receiver {
            waker.wake();
        }
        for waker in self.senders {
            waker.wake();
        }
    }
}

impl<T> State<T> {
    fn wake_receiver(&mut self) -> Wake {
        Wake { receiver: self.receiver_waker.take(), senders: Vec::new() }
    }

    fn wake_senders(&mut self) -> Wake {
        Wake { receiver: None, senders: std::mem::take(&mut self.waiting_senders) }
    }
}

/// Registers `waker` once, keeping the order in which waiters arrived.
fn register(waiters: &mut Vec<Waker>, waker: &Waker) {
    if !waiters.iter().any(|w| w.will_wake(waker)) {
        waiters.push(waker.clone());
    }
}

/// The sending half; cloning it adds a sender.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A send failed because the receiver is gone; the element comes back.
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> Sender<T> {
    /// Queues `value`, waiting while the channel is full; fails once the receiver is gone.
    pub fn send(&self, value: T) -> SendFuture<'_, T> {
        SendFuture { sender: self, value: Some(value) }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let wake = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 { state.wake_receiver() } else { Wake::default() }
        };
        wake.now();
    }
}

/// The future of [`Sender::send`]. Dropping it before it completes drops the element.
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    value: Option<T>,
}

// The element is only moved, never pinned.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this.sender.shared.lock();
        let value = this.value.take().expect("a send is not polled after it completed");
        if !state.receiver_alive {
            return Poll::Ready(Err(SendError(value)));
        }
        if state.queue.len() < state.capacity as usize {
            state.queue.push_back(value);
            let wake = state.wake_receiver();
            drop(state);
            wake.now();
            return Poll::Ready(Ok(()));
        }
        register(&mut state.waiting_senders, cx.waker());
        this.value = Some(value);
        Poll::Pending
    }
}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued, and a sender may still send.
    Empty,
    /// Nothing is queued, and every sender is gone.
    Disconnected,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Takes the first element, if any, with the senders to wake for the room it made.
    fn take(state: &mut State<T>) -> Option<(T, Wake)> {
        let value = state.queue.pop_front()?;
        if state.queue.is_empty() {
            // Idle channels hold no memory: most of an all-to-all edge's channels are idle.
            state.queue = VecDeque::new();
        }
        Some((value, state.wake_senders()))
    }

    /// The next element if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match Self::take(&mut state) {
            Some((value, wake)) => {
                drop(state);
                wake.now();
                Ok(value)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The next element, `Ready(None)` at the end, or `Pending` with `cx` woken when either
    /// arrives. Only the context of the latest poll is woken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some((value, wake)) = Self::take(&mut state) {
            drop(state);
            wake.now();
            return Poll::Ready(Some(value));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &state.receiver_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.receiver_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for the next element; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (queued, wake) = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            (std::mem::take(&mut state.queue), state.wake_senders())
        };
        wake.now();
        // Dropped outside the lock: an element's destructor may be arbitrary code.
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    fn queue_capacity<T>(receiver: &Receiver<T>) -> usize {
        receiver.shared.lock().queue.capacity()
    }

    #[test]
    fn elements_arrive_in_order_and_the_queue_allocates_only_while_it_holds_some() {
        let (sender, mut receiver) = bounded::<u32>(4);
        assert_eq!(queue_capacity(&receiver), 0, "a new channel allocates nothing");
        let (_, waker) = counting();
        for n in 0..3 {
            assert_eq!(poll(&mut sender.send(n), &waker), Poll::Ready(Ok(())));
        }
        assert!(queue_capacity(&receiver) >= 3);
        assert_eq!(receiver.try_recv(), Ok(0));
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(queue_capacity(&receiver), 0, "a drained channel gives its memory back");
    }

    #[test]
    fn a_full_channel_makes_the_sender_wait_until_the_receiver_takes_one() {
        let (sender, mut receiver) = bounded::<u32>(2);
        let (woken, waker) = counting();
        assert!(poll(&mut sender.send(1), &waker).is_ready());
        assert!(poll(&mut sender.send(2), &waker).is_ready());
        let mut third = sender.send(3);
        assert_eq!(poll(&mut third, &waker), Poll::Pending);
        assert_eq!(poll(&mut third, &waker), Poll::Pending, "polling again registers once");
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "room wakes the waiting sender once");
        assert_eq!(poll(&mut third, &waker), Poll::Ready(Ok(())));
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.try_recv(), Ok(3));
    }

    #[test]
    fn waiting_senders_are_woken_in_the_order_they_started_waiting() {
        let (sender, mut receiver) = bounded::<u32>(1);
        let second_sender = sender.clone();
        let order = Arc::new(Mutex::new(Vec::new()));
        struct Recording(Arc<Mutex<Vec<&'static str>>>, &'static str);
        impl Wake for Recording {
            fn wake(self: Arc<Self>) {
                self.0.lock().unwrap().push(self.1);
            }
        }
        let (_, plain) = counting();
        assert!(poll(&mut sender.send(0), &plain).is_ready());
        let first = Waker::from(Arc::new(Recording(order.clone(), "first")));
        let second = Waker::from(Arc::new(Recording(order.clone(), "second")));
        let mut a = second_sender.send(1);
        let mut b = sender.send(2);
        assert!(poll(&mut a, &first).is_pending());
        assert!(poll(&mut b, &second).is_pending());
        assert_eq!(receiver.try_recv(), Ok(0));
        assert_eq!(*order.lock().unwrap(), ["first", "second"]);
    }

    #[test]
    fn the_receiver_sees_the_end_after_the_last_sender_and_the_queue_drain() {
        let (sender, mut receiver) = bounded::<u32>(4);
        let clone = sender.clone();
        let (woken, waker) = counting();
        assert!(poll(&mut sender.send(7), &waker).is_ready());
        drop(sender);
        assert_eq!(receiver.try_recv(), Ok(7));
        let mut context = Context::from_waker(&waker);
        assert_eq!(receiver.poll_recv(&mut context), Poll::Pending, "one sender is left");
        drop(clone);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the last sender's drop wakes the receiver");
        assert_eq!(receiver.poll_recv(&mut context), Poll::Ready(None));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_send_fails_once_the_receiver_is_gone_and_queued_elements_are_dropped() {
        let (sender, receiver) = bounded::<Arc<()>>(1);
        let element = Arc::new(());
        let (woken, waker) = counting();
        assert!(poll(&mut sender.send(element.clone()), &waker).is_ready());
        let mut waiting = sender.send(element.clone());
        assert!(poll(&mut waiting, &waker).is_pending());
        drop(receiver);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "a waiting sender learns the receiver is gone");
        assert!(matches!(poll(&mut waiting, &waker), Poll::Ready(Err(SendError(_)))));
        assert_eq!(Arc::strong_count(&element), 1, "the queued element was dropped with the receiver");
        assert!(matches!(poll(&mut sender.send(element.clone()), &waker), Poll::Ready(Err(_))));
    }

    #[test]
    fn an_idle_channel_is_small() {
        // `p²` channels per all-to-all edge: at p = 2000 every byte here is 4 MB.
        assert!(std::mem::size_of::<Shared<crate::element::StreamElement<u64>>>() <= 96);
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send() {
        let (sender, mut receiver) = bounded::<u32>(1);
        let (woken, waker) = counting();
        let mut context = Context::from_waker(&waker);
        assert_eq!(receiver.poll_recv(&mut context), Poll::Pending);
        assert!(poll(&mut sender.send(5), &waker).is_ready());
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(receiver.poll_recv(&mut context), Poll::Ready(Some(5)));
    }
}
