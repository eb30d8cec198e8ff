//! Helpers shared by the end-to-end tests (locating `../shared`, the llama.cpp build, the cache).
