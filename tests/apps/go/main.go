// The Go real app: net/http instrumented with otelhttp, traces and logs sent with
// the OTLP/HTTP exporters configured from the standard OTEL_* environment.
// Routes: /ok (200), /boom (500), /slow (200 after ~300 ms), /users/{id} (200).
//
//	realapp-go PORT
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/log/global"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	ctx := context.Background()
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		log.Fatal(err)
	}
	texp, err := otlptracehttp.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(texp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	lexp, err := otlploghttp.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp)),
		sdklog.WithResource(res))
	global.SetLoggerProvider(lp)
	logger := otelslog.NewLogger("realapp")

	// otelhttp inside the mux, one handler per route: wrapped around the whole
	// ServeMux it only renames the span after routing ("GET /users/{id}") and sets
	// no http.route attribute (otelhttp v0.72), so per-route RED would be lost.
	mux := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, otelhttp.NewHandler(h, pattern))
	}
	handle("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "ok handled")
		_, _ = w.Write([]byte("ok"))
	})
	handle("GET /boom", func(w http.ResponseWriter, r *http.Request) {
		logger.ErrorContext(r.Context(), "boom handled")
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	handle("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		logger.InfoContext(r.Context(), "slow handled")
		_, _ = w.Write([]byte("slow"))
	})
	handle("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "user handled", "user.id", r.PathValue("id"))
		_, _ = w.Write([]byte("user " + r.PathValue("id")))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Args[1], Handler: mux}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = tp.Shutdown(sctx)
	_ = lp.Shutdown(sctx)
}
