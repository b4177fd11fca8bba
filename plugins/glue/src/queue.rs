//! [`Queue`]: work the request contexts leave for the root context's timer (served reports,
//! rate-limit settlements), bounded so an unreachable service cannot grow it without end.

use std::cell::RefCell;
use std::collections::VecDeque;

/// A bounded first-in first-out queue shared by one VM's contexts; when full, the oldest
/// item is dropped for the newest.
#[derive(Debug)]
pub struct Queue<T> {
    items: RefCell<VecDeque<T>>,
    capacity: usize,
}

impl<T> Queue<T> {
    /// An empty queue keeping at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            items: RefCell::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`; `true` if the oldest item was dropped to make room.
    pub fn push(&self, item: T) -> bool {
        let Ok(mut q) = self.items.try_borrow_mut() else {
            return true;
        };
        let dropped = q.len() >= self.capacity && q.pop_front().is_some();
        q.push_back(item);
        dropped
    }

    /// Takes the oldest item.
    pub fn pop(&self) -> Option<T> {
        self.items.try_borrow_mut().ok()?.pop_front()
    }

    /// Takes up to `n` of the oldest items, oldest first.
    pub fn take(&self, n: usize) -> Vec<T> {
        let Ok(mut q) = self.items.try_borrow_mut() else {
            return Vec::new();
        };
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.items.try_borrow().map_or(0, |q| q.len())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    #[test]
    fn keeps_the_newest_items_up_to_its_capacity_in_order() {
        let q = Queue::new(3);
        assert!(q.is_empty());
        for i in 0..3 {
            assert!(!q.push(i));
        }
        assert!(q.push(3), "the fourth item drops the oldest");
        assert_eq!(q.len(), 3);
        assert_eq!(q.take(2), vec![1, 2]);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), None);
        assert_eq!(q.take(5), Vec::<i32>::new());
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_newest_item() {
        let q = Queue::new(0);
        assert!(!q.push("a"));
        assert!(q.push("b"));
        assert_eq!(q.take(9), vec!["b"]);
    }
}
