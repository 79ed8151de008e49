package dev.deepedge.jni;

/**
 * Plain JNI access to deepedge (library {@code deepedge_jni}), for apps that do not use the uniffi
 * Kotlin bindings. A model is a {@code long} handle: load it, generate with a streaming callback,
 * cancel from any thread, free it. Handles are looked up, never dereferenced, so a freed or made-up
 * handle throws {@link DeepedgeException} instead of crashing the process; {@link #free} twice is
 * harmless. Calls on one handle are serialized; use one handle per thread to run in parallel.
 */
public final class DeepedgeNative {
    static {
        System.loadLibrary("deepedge_jni");
    }

    private DeepedgeNative() {}

    /** Receives generated text as it is produced, on the thread that called generate. */
    public interface TokenCallback {
        /** One piece of text (never split inside a character); return false to stop. */
        boolean onToken(String piece);
    }

    /**
     * Opens a GGUF model. {@code contextSize} 0 means the model's (at most 4096), {@code threads} 0
     * one per core. Throws DeepedgeException when the file is missing or not a model.
     */
    public static native long load(String path, int contextSize, int threads);

    /**
     * Completes {@code prompt} (raw text, tokenized as {@code deepedge run -p} does) with llama.cpp's
     * default sampling at {@code temperature} (0 = greedy) and {@code seed}, streaming pieces to
     * {@code callback} (may be null). Returns the whole text, the same as {@code deepedge run} prints
     * for the same arguments. A callback that throws stops generation and its exception propagates.
     */
    public static native String generate(
            long model, String prompt, int maxTokens, float temperature, long seed, TokenCallback callback);

    /** Stops the generation running on {@code model}, from any thread; it returns the text so far. */
    public static native void cancel(long model);

    /** Frees the model; a generation still running on it finishes first. Unknown handles are ignored. */
    public static native void free(long model);
}
