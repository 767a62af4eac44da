// Package loadgen drives HTTP GET load at a server on this machine and
// measures throughput and latency. Runs are bounded in time and count.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Result of a load run.
type Result struct {
	Requests int
	Errors   int
	Elapsed  time.Duration
	P50, P99 time.Duration
	FirstErr error
}

// RPS is successful requests per second.
func (r Result) RPS() float64 { return float64(r.Requests-r.Errors) / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, %d requests, %d errors",
		r.RPS(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Requests, r.Errors)
}

// Run sends GETs for urls (round robin from a different offset per worker)
// over conns keep-alive connections for d, after a warm-up of warm, and at
// most maxRequests in all. Only 200 answers count as successes.
func Run(ctx context.Context, urls []string, conns int, warm, d time.Duration, maxRequests int) Result {
	var mu sync.Mutex
	var lat []time.Duration
	var res Result
	var wg sync.WaitGroup
	begin := time.Now()
	measureFrom := begin.Add(warm)
	deadline := measureFrom.Add(d)
	budget := make(chan struct{}, maxRequests)
	for range maxRequests {
		budget <- struct{}{}
	}
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			var my []time.Duration
			var n, errs int
			var firstErr error
			for i := w * len(urls) / conns; ctx.Err() == nil; i++ {
				now := time.Now()
				if now.After(deadline) {
					break
				}
				select {
				case <-budget:
				default:
					i = -1
				}
				if i < 0 {
					break
				}
				err := get(ctx, c, urls[i%len(urls)])
				took := time.Since(now)
				if now.Before(measureFrom) {
					continue
				}
				n++
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				my = append(my, took)
			}
			mu.Lock()
			lat = append(lat, my...)
			res.Requests += n
			res.Errors += errs
			if res.FirstErr == nil {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = min(time.Since(measureFrom), d)
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[len(lat)*99/100]
	}
	return res
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
