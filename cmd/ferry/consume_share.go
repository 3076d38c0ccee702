package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// explicitFlags returns the names of the flags given on the command line.
func explicitFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// parseAck reads -ack.
func parseAck(s string) (kgo.AckStatus, error) {
	switch s {
	case "accept":
		return kgo.AckAccept, nil
	case "release":
		return kgo.AckRelease, nil
	case "reject":
		return kgo.AckReject, nil
	}
	return 0, usageError("-ack %q: want accept, release or reject", s)
}

// runShareConsume is `ferry consume TOPIC -share GROUP`: a member of a
// share group that prints each record it gets and acknowledges it as
// -ack says. Acknowledgements go with the next fetch and are flushed
// before it exits; a record printed but not acknowledged (the process was
// killed) is delivered again, to this member or another.
func runShareConsume(ctx context.Context, o *consumeOpts, topic string, stdout io.Writer, set map[string]bool) error {
	for _, f := range []string{"group", "partition", "offset", "e"} {
		if set[f] {
			return usageError("consume: -share and -%s exclude each other", f)
		}
	}
	status, err := parseAck(o.ack)
	if err != nil {
		return err
	}
	if o.idle < 0 {
		return usageError("-idle must not be negative")
	}
	format, err := compileFormat(o.format)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("consume topic %q as share group %q", topic, o.share)

	admin, rctx, err := o.client.open(ctx)
	if err != nil {
		return err
	}
	tds, err := admin.adm.ListTopicsWithInternal(rctx, topic)
	if err == nil {
		if td, ok := tds[topic]; !ok {
			err = kerr.UnknownTopicOrPartition
		} else {
			err = td.Err
		}
	}
	if err != nil {
		err = admin.fail(where, err)
	}
	admin.close()
	if err != nil {
		return err
	}

	c, err := o.client.connect(kgo.ShareGroup(o.share), kgo.ConsumeTopics(topic))
	if err != nil {
		return err
	}
	defer c.close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var n int
	var pollErr error
	last := time.Now()
loop:
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if o.idle > 0 {
			pctx, cancel = context.WithDeadline(ctx, last.Add(o.idle))
		}
		fetches := c.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			break
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, kgo.ErrClientClosed) {
				continue
			}
			pollErr = c.fail(fmt.Sprintf("%s partition %d", where, fe.Partition), fe.Err)
			break loop
		}
		var records []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { records = append(records, r) })
		if len(records) == 0 {
			if o.idle > 0 && time.Since(last) >= o.idle {
				break
			}
			continue
		}
		last = time.Now()
		for i, r := range records {
			if o.client.json() {
				cr := toConsumed(r)
				cr.DeliveryCount = r.DeliveryCount()
				if err := writeJSONLine(out, cr); err != nil {
					return err
				}
			} else {
				out.Write(format(nil, r))
			}
			r.Ack(status)
			n++
			if o.count > 0 && n >= o.count {
				// Records taken but not printed go back at once.
				for _, rest := range records[i+1:] {
					rest.Ack(kgo.AckRelease)
				}
				break loop
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	fctx, cancel := c.ctx(context.WithoutCancel(ctx))
	defer cancel()
	if err := c.cl.FlushAcks(fctx); err != nil && pollErr == nil {
		pollErr = c.fail(where+": acknowledge", err)
	}
	return pollErr
}
