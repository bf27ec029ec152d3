// Generates java_app.log: application log lines and stack traces as printed by
// Throwable.printStackTrace (with "Caused by:" and "... N more"), and java_uncaught.txt
// (the JVM's "Exception in thread" output). Run by generate.sh: java Shop.java [uncaught]
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;

public class Shop {
    static final DateTimeFormatter F = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSS");

    static void log(String level, String msg) {
        System.out.println(LocalDateTime.now().format(F) + " " + level + " [main] com.example.Shop: " + msg);
    }

    static void readStock(String sku) throws IOException {
        throw new IOException("stock file missing for " + sku);
    }

    static void reserve(String sku) {
        try {
            readStock(sku);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot reserve " + sku, e);
        }
    }

    static void order(String sku) {
        try {
            reserve(sku);
        } catch (RuntimeException e) {
            throw new IllegalStateException("order failed: sku=" + sku, e);
        }
    }

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("uncaught")) {
            Object o = null;
            o.toString();
        }
        log("INFO", "order received: sku=A-1");
        try {
            order("A-1");
        } catch (IllegalStateException e) {
            log("ERROR", "checkout failed");
            e.printStackTrace(System.out);
        }
        log("INFO", "order A-1 done");
    }
}
