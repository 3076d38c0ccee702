// Command rabbitmq measures a RabbitMQ quorum queue the way `ferry bench
// queue` measures a Ferry share group, for the comparison in Ferry's
// README: a publisher with publisher confirms sends 1 KiB persistent
// messages (at full speed, or at -rate with each message's send time in
// its body) while 1 or 3 consumers with manual acknowledgements ack every
// message; it reports the confirmed publish rate, the acknowledged-consume
// rate and the end-to-end latency (send time to receipt).
//
// It is a module of its own so that Ferry does not depend on an AMQP
// client, and it never runs in `make test`:
//
//	cd bench/rabbitmq && go run . -url amqp://guest:guest@127.0.0.1:5672/ -consumers 1,3
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "broker URL")
	consumers := flag.String("consumers", "1,3", "consumer counts")
	rate := flag.Int("rate", 10000, "messages/s of the latency runs (0: skip them)")
	duration := flag.Duration("duration", 10*time.Second, "length of each run")
	warmup := flag.Duration("warmup", 2*time.Second, "run this long before measuring")
	size := flag.Int("size", 1024, "message body size")
	prefetch := flag.Int("prefetch", 500, "consumer prefetch (basic.qos)")
	window := flag.Int("window", 1000, "unconfirmed messages the publisher keeps in flight")
	repeat := flag.Int("repeat", 1, "repetitions of every run (medians are shown)")
	flag.Parse()
	var counts []int
	for c := range strings.SplitSeq(*consumers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "bad -consumers")
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	rates := []int{0}
	if *rate > 0 {
		rates = append(rates, *rate)
	}
	fmt.Printf("rabbitmq quorum queue: %d B persistent messages, publisher confirms (window %d), manual acks (prefetch %d)", *size, *window, *prefetch)
	if *repeat > 1 {
		fmt.Printf("; medians of %d runs", *repeat)
	}
	fmt.Printf("\n%9s %9s %14s %20s %10s %10s\n", "consumers", "publish", "publish msg/s", "acked consume msg/s", "e2e p50 ms", "e2e p99 ms")
	for _, c := range counts {
		for _, r := range rates {
			var pub, con, p50, p99 []float64
			for i := range *repeat {
				res, err := run(*url, fmt.Sprintf("ferry-bench-%d-%d-%d", c, r, i), c, r, *duration, *warmup, *size, *prefetch, *window)
				if err != nil {
					fmt.Fprintln(os.Stderr, "run:", err)
					os.Exit(1)
				}
				pub, con = append(pub, res.publish), append(con, res.consumed)
				p50, p99 = append(p50, res.p50), append(p99, res.p99)
			}
			name, note := "max", ""
			if r > 0 {
				name = fmt.Sprintf("%d/s", r)
				if median(pub) < 0.98*float64(r) {
					note = "  (rate not held: the latency is the backlog's)"
				}
			}
			fmt.Printf("%9d %9s %14.0f %20.0f %10.2f %10.2f%s\n", c, name, median(pub), median(con), median(p50), median(p99), note)
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type result struct {
	publish, consumed, p50, p99 float64
}

// run declares a fresh quorum queue, runs the consumers and the publisher
// for warmup+duration, deletes the queue and returns what was measured
// after the warmup.
func run(url, queue string, consumers, rate int, duration, warmup time.Duration, size, prefetch, window int) (result, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return result{}, err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return result{}, err
	}
	defer ch.QueueDelete(queue, false, false, false)

	begin := time.Now()
	measureFrom := begin.Add(warmup)
	end := measureFrom.Add(duration)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var consumed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for range consumers {
		cc, err := amqp.Dial(url)
		if err != nil {
			return result{}, err
		}
		defer cc.Close()
		cch, err := cc.Channel()
		if err != nil {
			return result{}, err
		}
		if err := cch.Qos(prefetch, 0, false); err != nil {
			return result{}, err
		}
		msgs, err := cch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			return result{}, err
		}
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-msgs:
					if !ok {
						return
					}
					now := time.Now()
					d.Ack(false)
					if len(d.Body) >= 8 {
						sent := time.Unix(0, int64(binary.BigEndian.Uint64(d.Body)))
						if sent.After(measureFrom) && now.Before(end) {
							consumed.Add(1)
							if rate > 0 {
								mine = append(mine, now.Sub(sent))
							}
						}
					}
				}
			}
		})
	}

	// The publisher: confirms, a window of unconfirmed messages.
	if err := ch.Confirm(false); err != nil {
		return result{}, err
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	sem := make(chan struct{}, window)
	var confirmed atomic.Int64
	var cwg sync.WaitGroup
	cwg.Go(func() {
		for c := range confirms {
			if c.Ack {
				confirmed.Add(1)
			}
			<-sem
		}
	})
	body := make([]byte, size)
	for i := range body {
		body[i] = 'A' + byte(i%26)
	}
	var confirmedAtStart int64
	started := false
	for i := 0; ; i++ {
		now := time.Now()
		if now.After(end) {
			break
		}
		if !started && now.After(measureFrom) {
			confirmedAtStart, started = confirmed.Load(), true
		}
		at := now
		if rate > 0 {
			at = begin.Add(time.Duration(i) * time.Second / time.Duration(rate))
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
		}
		binary.BigEndian.PutUint64(body, uint64(at.UnixNano()))
		sem <- struct{}{}
		err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
		if err != nil {
			return result{}, err
		}
	}
	published := confirmed.Load() - confirmedAtStart
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	slices.Sort(lat)
	res := result{
		publish:  float64(published) / duration.Seconds(),
		consumed: float64(consumed.Load()) / duration.Seconds(),
	}
	if len(lat) > 0 {
		res.p50 = float64(lat[len(lat)/2]) / float64(time.Millisecond)
		res.p99 = float64(lat[len(lat)*99/100]) / float64(time.Millisecond)
	}
	ch.Close()
	cwg.Wait()
	return res, nil
}
