package share

import (
	"errors"
	"sync"
	"time"
)

// dlqJob is a run of records given up on whose dead letters are to be
// written. Its records are archiving: never delivered again, and the start
// offset waits for them.
//
// The steps, each durable before the next, make a record end up in exactly
// one of the queue and the dead-letter topic across a crash: the archiving
// state is stored (the intent), the dead letters are written, the
// archived state is stored. A restart finds archiving runs in the store
// and resumes at the second step, asking the DLQWriter what it already
// wrote.
type dlqJob struct {
	key      spKey
	first    int64
	last     int64
	count    int16
	reason   Reason
	epoch    int32 // state epoch the records belong to
	durable  bool  // the archiving state is in the store
	check    bool  // ask DeadLettersWritten first: an earlier attempt may have written some
	attempts int
	retryAt  int64 // monotonic ns; 0: now
}

// dlqQueue holds the jobs of the dead-letter goroutine.
type dlqQueue struct {
	mu   sync.Mutex
	jobs []dlqJob
	kick chan struct{} // one-slot
}

func (q *dlqQueue) init() { q.kick = make(chan struct{}, 1) }

func (q *dlqQueue) push(jobs ...dlqJob) {
	if len(jobs) == 0 {
		return
	}
	q.mu.Lock()
	q.jobs = append(q.jobs, jobs...)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// next removes and returns the first job due at mono, or reports how long
// until one is (0: none queued).
func (q *dlqQueue) next(mono int64) (dlqJob, bool, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	wait := int64(0)
	for i, j := range q.jobs {
		if j.retryAt <= mono {
			q.jobs = append(q.jobs[:i], q.jobs[i+1:]...)
			return j, true, 0
		}
		if w := j.retryAt - mono; wait == 0 || w < wait {
			wait = w
		}
	}
	return dlqJob{}, false, wait
}

// Pending returns how many runs of records wait for their dead letters,
// for tests and metrics.
func (c *Coordinator) pendingDeadLetters() int {
	c.dlq.mu.Lock()
	defer c.dlq.mu.Unlock()
	return len(c.dlq.jobs)
}

// dlqLoop writes dead letters, one job at a time, retrying failures with
// a growing backoff.
func (c *Coordinator) dlqLoop() {
	defer c.wg.Done()
	var timer Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		mono, _ := c.now()
		job, ok, wait := c.dlq.next(mono)
		if ok {
			if !c.deadLetter(&job) {
				job.attempts++
				backoff := c.cfg.retryBackoff << min(job.attempts-1, 10)
				backoff = min(backoff, maxRetryBackoff)
				mono, _ = c.now()
				job.retryAt = mono + int64(backoff)
				c.dlq.mu.Lock()
				c.dlq.jobs = append(c.dlq.jobs, job)
				c.dlq.mu.Unlock()
			}
			select {
			case <-c.quit:
				return
			default:
			}
			continue
		}
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if wait > 0 {
			timer = c.clock.AfterFunc(time.Duration(wait), func() {
				select {
				case c.dlq.kick <- struct{}{}:
				default:
				}
			})
		}
		select {
		case <-c.quit:
			return
		case <-c.dlq.kick:
		}
	}
}

// deadLetter runs one job; false means retry it later.
func (c *Coordinator) deadLetter(job *dlqJob) bool {
	g, sp := c.lookup(job.key)
	if g == nil || sp == nil {
		return true // deleted
	}
	sp.mu.Lock()
	live := !sp.dead && sp.stateEpoch == job.epoch && sp.archivingLocked(job.first, job.last)
	sp.mu.Unlock()
	if !live {
		return true // reset or deleted since
	}
	gc := c.groupConfig(g)
	p := c.parts[sp.part]

	// 1. The intent.
	if !job.durable {
		if !c.storeState(sp, p, job, persistArchiving) {
			return false
		}
		job.durable = true
	}

	// 2. The dead letters.
	if c.dlqEnabled(gc) {
		dl := DeadLetter{
			Group:         job.key.group,
			Topic:         gc.dlqTopic,
			CopyRecord:    gc.dlqCopy,
			Source:        job.key.tp,
			FirstOffset:   job.first,
			LastOffset:    job.last,
			DeliveryCount: job.count,
			Reason:        job.reason,
		}
		if name, _, ok := c.topic(job.key.tp.TopicID); ok {
			dl.SourceTopic = name
		}
		if job.check {
			next, err := c.cfg.DLQ.DeadLettersWritten(&dl)
			if err != nil {
				c.log.Warn("checking dead letters", "group", dl.Group, "dlq_topic", dl.Topic, "err", err)
				return false
			}
			dl.FirstOffset = max(next, dl.FirstOffset)
		}
		if dl.FirstOffset <= dl.LastOffset {
			if err := c.cfg.DLQ.WriteDeadLetters(&dl); err != nil {
				if !errors.Is(err, ErrDeadLetterRejected) {
					job.check = true
					c.log.Warn("writing dead letters", "group", dl.Group, "dlq_topic", dl.Topic, "first_offset", dl.FirstOffset, "last_offset", dl.LastOffset, "err", err)
					return false
				}
				c.log.Warn("dead letters refused; archiving the records without them", "group", dl.Group, "dlq_topic", dl.Topic, "first_offset", dl.FirstOffset, "last_offset", dl.LastOffset, "err", err)
			}
		}
		job.check = true // from here on they are written
	} else {
		c.log.Info("archiving records without dead letters: the group has no dead-letter topic any more", "group", job.key.group, "first_offset", job.first, "last_offset", job.last)
	}

	// 3. Archived.
	return c.storeState(sp, p, job, persistArchived)
}

// storeState durably writes the job's records in state (archiving or
// archived) and, for archived, applies it.
func (c *Coordinator) storeState(sp *sharePartition, p *statePart, job *dlqJob, state int8) bool {
	c.lockPart(p)
	defer c.unlockPart(p)
	sp.mu.Lock()
	if sp.dead || sp.stateEpoch != job.epoch {
		sp.mu.Unlock()
		return true
	}
	sb := stateBatch{first: job.first, last: job.last, state: state, count: job.count}
	if state == persistArchiving {
		sb.reason = job.reason
	}
	sbs := sp.dirtyLocked([]stateBatch{sb})
	recs := []Record{{Key: sp.updKey, Value: sp.updateValueLocked(sbs)}}
	sp.mu.Unlock()
	if err := c.appendState(p, recs); err != nil {
		c.log.Warn("storing dead-letter state", "group", job.key.group, "partition", job.key.tp.Partition, "err", err)
		return false
	}
	c.appended(p, recs, false)
	if state == persistArchived {
		sp.mu.Lock()
		if !sp.dead && sp.stateEpoch == job.epoch {
			i, j := sp.rs.isolate(job.first, job.last)
			for k := i; k < j; k++ {
				if r := &sp.rs[k]; r.state == stArchiving {
					r.state, r.reason = stArchived, 0
				}
			}
			for k := i; k < len(sp.rs) && k < j; k++ {
				k = sp.rs.mergeAround(k)
			}
			sp.advanceLocked()
		}
		sp.mu.Unlock()
	}
	return true
}

// archivingLocked reports whether any record of [first, last] is
// archiving.
func (sp *sharePartition) archivingLocked(first, last int64) bool {
	for i := sp.rs.find(first); i < len(sp.rs) && sp.rs[i].first <= last; i++ {
		if sp.rs[i].state == stArchiving {
			return true
		}
	}
	return false
}
