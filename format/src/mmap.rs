//! The one place this crate maps files into memory.

/// Maps a file read-only.
#[allow(unsafe_code)]
pub fn map_readonly(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and private to this process. Like every mmap-based reader
    // (llama.cpp included) we rely on the file not being truncated or rewritten by another process
    // while it is mapped; our own writers always write to a temp file and rename, never in place.
    unsafe { memmap2::Mmap::map(file) }
}
