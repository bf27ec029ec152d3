// The Java real app: the JDK's com.sun.net.httpserver, no OpenTelemetry code at all.
// Run under the OpenTelemetry Java agent (scripts/apps.sh java PORT):
//   java -javaagent:opentelemetry-javaagent.jar -cp classes RealApp PORT
// Routes: /ok (200), /boom (500), /slow (200 after ~300 ms), /users/ID (200).
// Each request logs one line through java.util.logging, which the agent bridges to
// OTLP logs inside the request's span.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;
import java.util.logging.Level;
import java.util.logging.Logger;

public final class RealApp {
    private static final Logger LOG = Logger.getLogger("realapp");

    private RealApp() {}

    private static void send(HttpExchange ex, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    public static void main(String[] args) throws IOException {
        HttpServer server = HttpServer.create(
            new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 64);
        server.createContext("/ok", ex -> {
            LOG.info("ok handled");
            send(ex, 200, "ok");
        });
        server.createContext("/boom", ex -> {
            LOG.severe("boom handled");
            send(ex, 500, "boom");
        });
        server.createContext("/slow", ex -> {
            try {
                Thread.sleep(300);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            LOG.info("slow handled");
            send(ex, 200, "slow");
        });
        server.createContext("/users/", ex -> {
            String id = ex.getRequestURI().getPath().substring("/users/".length());
            LOG.log(Level.INFO, "user {0} handled", id);
            send(ex, 200, "user " + id);
        });
        server.setExecutor(Executors.newFixedThreadPool(8));
        server.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> server.stop(0)));
    }
}
