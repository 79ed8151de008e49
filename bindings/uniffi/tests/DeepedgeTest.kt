// The generated Kotlin bindings (bindings/uniffi/kotlin) run on the JVM against the host
// libdeepedge_uniffi through JNA, on a real model:
//
//   java ... DeepedgeTestKt MODEL.gguf PATH/TO/deepedge [N_TOKENS]
//
// Checks: a bad path is a DeepedgeException.Load, the record defaults equal the library's, streamed
// pieces add up to the returned text, greedy text equals what the real `deepedge run` binary prints
// (run here as a child process), cancelling from another thread stops the generation, a listener that
// returns false stops it, a session keeps its conversation, and tokenize/detokenize round-trip.
// bindings/uniffi/run-tests.sh compiles and runs it.

import dev.deepedge.CancelToken
import dev.deepedge.DeepedgeException
import dev.deepedge.FinishReason
import dev.deepedge.GenerateOptions
import dev.deepedge.Model
import dev.deepedge.ModelOptions
import dev.deepedge.Session
import dev.deepedge.TokenListener
import dev.deepedge.defaultGenerateOptions
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread

var passed = 0
var failed = 0

fun check(condition: Boolean, message: () -> String) {
    if (condition) {
        passed++
    } else {
        failed++
        System.err.println("FAIL: " + message())
    }
}

/** Text printed by `deepedge run` for the same arguments, without the newline it adds at the end. */
fun deepedgeRun(cli: String, model: String, prompt: String, nTokens: Int): String {
    val process = ProcessBuilder(cli, "run", "-m", model, "-p", prompt, "-n", "$nTokens", "--temp", "0", "--seed", "0")
        .redirectError(ProcessBuilder.Redirect.DISCARD)
        .start()
    val out = process.inputStream.readBytes().toString(Charsets.UTF_8)
    check(process.waitFor() == 0) { "deepedge run failed" }
    return out.removeSuffix("\n")
}

/** Collects streamed pieces; returns false (stop) once `stopAfter` pieces have arrived, if given. */
class Collector(private val stopAfter: Int = 0) : TokenListener {
    val pieces = mutableListOf<String>()
    override fun onToken(piece: String): Boolean {
        pieces.add(piece)
        return stopAfter == 0 || pieces.size < stopAfter
    }
}

fun main(args: Array<String>) {
    val modelPath = args[0]
    val cli = args[1]
    val nTokens = if (args.size > 2) args[2].toInt() else 16
    val prompt = "The capital of France is"

    try {
        Model.load("/nonexistent/model.gguf", ModelOptions())
        check(false) { "a missing file loaded" }
    } catch (e: DeepedgeException.Load) {
        check(e.message!!.contains("/nonexistent/model.gguf")) { "message: ${e.message}" }
    }

    check(GenerateOptions() == defaultGenerateOptions()) {
        "record defaults ${GenerateOptions()} differ from the library's ${defaultGenerateOptions()}"
    }

    Model.load(modelPath, ModelOptions()).use { model ->
        val greedy = GenerateOptions(maxTokens = nTokens.toUInt(), temperature = 0f)

        // Streaming: the pieces add up to the text, which is `deepedge run`'s.
        val collector = Collector()
        val generation = model.generate(prompt, greedy, collector, null)
        check(collector.pieces.size >= 2) { "only ${collector.pieces.size} pieces" }
        check(collector.pieces.joinToString("") == generation.text) { "streamed text differs" }
        val expected = deepedgeRun(cli, modelPath, prompt, nTokens)
        check(generation.text == expected) { "text differs from deepedge run:\n${generation.text}\n---\n$expected" }
        check(generation.generatedTokens.toInt() in 1..nTokens) { "${generation.generatedTokens} tokens" }

        // A listener returning false stops early.
        val early = Collector(stopAfter = 2)
        val stopped = model.generate(prompt, greedy, early, null)
        check(early.pieces.size == 2 && stopped.finishReason == FinishReason.CANCELLED) {
            "stopped after ${early.pieces.size} pieces, ${stopped.finishReason}"
        }

        // Cancelling from another thread: the canceller waits for the first piece, the listener waits
        // until the token is raised, so the generation stops right after that piece.
        val token = CancelToken()
        val firstPiece = CountDownLatch(1)
        val canceller = thread {
            firstPiece.await(60, TimeUnit.SECONDS)
            token.cancel()
        }
        var seen = 0
        val cancelled = model.generate(prompt, greedy, object : TokenListener {
            override fun onToken(piece: String): Boolean {
                seen++
                firstPiece.countDown()
                val deadline = System.nanoTime() + 30_000_000_000L
                while (!token.isCancelled() && System.nanoTime() < deadline) Thread.sleep(1)
                return true
            }
        }, token)
        canceller.join()
        check(cancelled.finishReason == FinishReason.CANCELLED && seen == 1) {
            "cancel: ${cancelled.finishReason} after $seen pieces"
        }
        check(generation.text.startsWith(cancelled.text)) { "cancelled text is not a prefix" }
        token.close()

        // Errors as values: a prompt that cannot fit.
        try {
            model.generate(prompt, GenerateOptions(maxTokens = 1u shl 30), null, null)
            check(false) { "an oversized request ran" }
        } catch (e: DeepedgeException.ContextOverflow) {
            check(e.message!!.contains("does not fit")) { "message: ${e.message}" }
        }

        // A session keeps its conversation; the second turn computes only the new part.
        Session(model, "You answer in one short sentence.").use { session ->
            val first = session.send("What is the capital of France?", greedy, null, null)
            check(first.generatedTokens > 0u && session.tokenCount() > 0u) { "first turn" }
            val second = session.send("And of Italy?", greedy, null, null)
            check(second.promptTokens > first.promptTokens) { "second turn ${second.promptTokens}" }
            session.reset()
            check(session.tokenCount() == 0u) { "after reset ${session.tokenCount()}" }
        }

        val text = "Hello, world! 你好"
        val ids = model.tokenize(text, false, false)
        check(ids.isNotEmpty() && model.detokenize(ids, false) == text) { "round trip" }
        try {
            model.detokenize(listOf(UInt.MAX_VALUE), false)
            check(false) { "an unknown id was accepted" }
        } catch (e: DeepedgeException.InvalidArgument) {
            check(e.message!!.contains("outside the vocabulary")) { "message: ${e.message}" }
        }
    }

    println("$passed passed, $failed failed")
    if (failed > 0) kotlin.system.exitProcess(1)
}
