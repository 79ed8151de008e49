// DeepedgeNative (JNI) tested from Java against the host libdeepedge_jni, on a real model:
//
//   java -Djava.library.path=target/debug ... DeepedgeNativeTest MODEL.gguf PATH/TO/deepedge [N_TOKENS]
//
// Checks: a bad path throws DeepedgeException, streamed pieces add up to the returned text, which equals
// what the real `deepedge run` binary prints (run here as a child process), a callback returning false
// stops early, cancel from another thread stops the generation, an exception thrown by the callback
// propagates, and freed or made-up handles throw instead of crashing. bindings/jni/run-tests.sh runs it.

import dev.deepedge.jni.DeepedgeException;
import dev.deepedge.jni.DeepedgeNative;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

public class DeepedgeNativeTest {
    static int passed = 0;
    static int failed = 0;

    static void check(boolean condition, Supplier<String> message) {
        if (condition) {
            passed++;
        } else {
            failed++;
            System.err.println("FAIL: " + message.get());
        }
    }

    static String deepedgeRun(String cli, String model, String prompt, int n) throws Exception {
        Process p = new ProcessBuilder(cli, "run", "-m", model, "-p", prompt, "-n", Integer.toString(n),
                        "--temp", "0", "--seed", "0")
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        check(p.waitFor() == 0, () -> "deepedge run failed");
        return out.endsWith("\n") ? out.substring(0, out.length() - 1) : out;
    }

    public static void main(String[] args) throws Exception {
        String modelPath = args[0];
        String cli = args[1];
        int n = args.length > 2 ? Integer.parseInt(args[2]) : 16;
        String prompt = "The capital of France is";

        try {
            DeepedgeNative.load("/nonexistent/model.gguf", 0, 0);
            check(false, () -> "a missing file loaded");
        } catch (DeepedgeException e) {
            check(e.getMessage().contains("/nonexistent/model.gguf"), () -> "message: " + e.getMessage());
        }

        long model = DeepedgeNative.load(modelPath, 0, 0);
        check(model != 0, () -> "no handle");

        List<String> pieces = new ArrayList<>();
        String text = DeepedgeNative.generate(model, prompt, n, 0f, 0, piece -> pieces.add(piece));
        check(pieces.size() >= 2 && String.join("", pieces).equals(text), () -> "streamed text differs");
        String expected = deepedgeRun(cli, modelPath, prompt, n);
        check(text.equals(expected), () -> "text differs from deepedge run:\n" + text + "\n---\n" + expected);
        check(DeepedgeNative.generate(model, prompt, n, 0f, 0, null).equals(text), () -> "null callback");

        List<String> early = new ArrayList<>();
        String stopped = DeepedgeNative.generate(model, prompt, n, 0f, 0, piece -> {
            early.add(piece);
            return early.size() < 2;
        });
        check(early.size() == 2 && text.startsWith(stopped) && stopped.length() < text.length(),
                () -> "early stop after " + early.size() + " pieces: " + stopped);

        // Cancel from another thread: it waits for the first piece; the callback waits for the cancel.
        CountDownLatch firstPiece = new CountDownLatch(1);
        CountDownLatch cancelled = new CountDownLatch(1);
        Thread canceller = new Thread(() -> {
            try {
                firstPiece.await(60, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                return;
            }
            DeepedgeNative.cancel(model);
            cancelled.countDown();
        });
        canceller.start();
        int[] seen = {0};
        String partial = DeepedgeNative.generate(model, prompt, n, 0f, 0, piece -> {
            seen[0]++;
            firstPiece.countDown();
            try {
                cancelled.await(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                return false;
            }
            return true;
        });
        canceller.join();
        check(seen[0] == 1 && text.startsWith(partial) && partial.length() < text.length(),
                () -> "cancel: " + seen[0] + " pieces, " + partial);

        // An exception thrown by the callback comes back out of generate.
        try {
            DeepedgeNative.generate(model, prompt, n, 0f, 0, piece -> {
                throw new IllegalStateException("from the callback");
            });
            check(false, () -> "the callback's exception was lost");
        } catch (IllegalStateException e) {
            check(e.getMessage().equals("from the callback"), () -> "message: " + e.getMessage());
        }

        try {
            DeepedgeNative.generate(model, prompt, 1 << 30, 0f, 0, null);
            check(false, () -> "an oversized request ran");
        } catch (DeepedgeException e) {
            check(e.getMessage().contains("does not fit"), () -> "message: " + e.getMessage());
        }

        DeepedgeNative.free(model);
        DeepedgeNative.free(model);
        for (long handle : new long[] {model, 0, 12345}) {
            try {
                DeepedgeNative.generate(handle, prompt, n, 0f, 0, null);
                check(false, () -> "a dead handle worked");
            } catch (DeepedgeException e) {
                check(e.getMessage().contains("handle"), () -> "message: " + e.getMessage());
            }
        }

        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
