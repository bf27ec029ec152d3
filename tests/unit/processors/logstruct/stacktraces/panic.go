// Generates go_panic.txt (a runtime error panic: index out of range, with the
// goroutine trace) and go_panic_error.txt (panic(err) in a goroutine after a log line).
// Run by generate.sh: go run panic.go [index|error]
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
)

func pick(items []string, i int) string {
	return items[i]
}

type store struct{ name string }

func (s *store) load(key string) error {
	return fmt.Errorf("load %s: %w", key, errors.New("connection refused"))
}

func main() {
	log.SetFlags(log.Ldate | log.Ltime | log.LUTC)
	log.Printf("starting worker pid=%d", os.Getpid())
	if len(os.Args) > 1 && os.Args[1] == "error" {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &store{name: "orders"}
			if err := s.load("order:42"); err != nil {
				panic(err)
			}
		}()
		wg.Wait()
		return
	}
	fmt.Println(pick([]string{"a", "b", "c"}, 5))
}
