//! Host memory of the FAIRY2I buffer type (docs/abi.md §3): one zeroed, 64-byte aligned allocation
//! per ggml buffer. The ggml `struct ggml_backend_buffer` itself is allocated and freed by ggml; this
//! is its `context`.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every buffer base (and the buffer type's tensor alignment).
pub const ALIGNMENT: usize = 64;

/// One allocation.
#[derive(Debug)]
pub struct HostBuffer {
    ptr: NonNull<u8>,
    size: usize,
    layout: Layout,
}

// SAFETY: the allocation is plain memory owned by this value; ggml serialises access to a buffer's
// contents (and the pointer itself is never mutated after creation).
unsafe impl Send for HostBuffer {}
// SAFETY: as above; &HostBuffer only hands out the base address and size.
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    /// Allocates `size` zeroed bytes (at least 1), aligned to [`ALIGNMENT`]; `None` when the
    /// allocator fails or the size overflows.
    pub fn new(size: usize) -> Option<HostBuffer> {
        let layout =
            Layout::from_size_align(size.max(1).checked_next_multiple_of(ALIGNMENT)?, ALIGNMENT)
                .ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        Some(HostBuffer { ptr, size, layout })
    }

    /// The base address.
    pub fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The size ggml asked for.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with this layout and is freed once, here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Whether `[addr, addr + len)` lies inside `[base, base + size)`, without overflow.
pub fn range_inside(base: usize, size: usize, addr: usize, len: usize) -> bool {
    addr >= base
        && addr
            .checked_add(len)
            .is_some_and(|end| base.checked_add(size).is_some_and(|b_end| end <= b_end))
}

/// Whether two byte ranges overlap.
pub fn ranges_overlap(a: usize, a_len: usize, b: usize, b_len: usize) -> bool {
    a_len != 0 && b_len != 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for size in [0usize, 1, 63, 64, 65, 1 << 20] {
            let buf = HostBuffer::new(size).unwrap();
            assert_eq!(buf.base() as usize % ALIGNMENT, 0);
            assert_eq!(buf.size(), size);
            // SAFETY: the allocation holds at least size.max(1) initialised (zeroed) bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.base(), size.max(1)) };
            assert!(bytes.iter().all(|&b| b == 0));
        }
        assert!(HostBuffer::new(usize::MAX - 10).is_none());
    }

    #[test]
    fn ranges() {
        assert!(range_inside(100, 50, 100, 50));
        assert!(range_inside(100, 50, 149, 1));
        assert!(!range_inside(100, 50, 149, 2));
        assert!(!range_inside(100, 50, 99, 1));
        assert!(!range_inside(100, 50, usize::MAX, 2));
        assert!(range_inside(100, 50, 120, 0));
        assert!(ranges_overlap(0, 10, 9, 1));
        assert!(!ranges_overlap(0, 10, 10, 5));
        assert!(!ranges_overlap(0, 0, 0, 5));
    }
}
