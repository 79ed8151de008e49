package dev.deepedge.jni;

/** A deepedge failure: a missing or malformed model file, a bad argument, a prompt that does not fit. */
public class DeepedgeException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public DeepedgeException(String message) {
        super(message);
    }
}
