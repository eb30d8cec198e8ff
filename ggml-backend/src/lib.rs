//! `libggml-fairy2i.so`: a ggml backend for F2I weights. (Being written.)
