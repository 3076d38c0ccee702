package share

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Group config names a share group may set (Kafka's GroupConfig, plus
// Ferry's backoff), with IncrementalAlterConfigs on a GROUP resource.
const (
	GroupSessionTimeout      = "share.session.timeout.ms"
	GroupHeartbeatInterval   = "share.heartbeat.interval.ms"
	GroupRecordLockDuration  = "share.record.lock.duration.ms"
	GroupDeliveryCountLimit  = "share.delivery.count.limit"
	GroupAutoOffsetReset     = "share.auto.offset.reset"
	GroupIsolationLevel      = "share.isolation.level"
	GroupDLQTopic            = "errors.deadletterqueue.topic.name"
	GroupDLQCopyRecord       = "errors.deadletterqueue.copy.record.enable"
	GroupDeliveryBackoff     = "share.delivery.backoff.ms"
	GroupDeliveryBackoffMax  = "share.delivery.backoff.max.ms"
	isolationReadCommitted   = "read_committed"
	isolationReadUncommitted = "read_uncommitted"
)

// groupConfigNames are the group configs this package reads.
var groupConfigNames = map[string]bool{
	GroupSessionTimeout: true, GroupHeartbeatInterval: true, GroupRecordLockDuration: true,
	GroupDeliveryCountLimit: true, GroupAutoOffsetReset: true, GroupIsolationLevel: true,
	GroupDLQTopic: true, GroupDLQCopyRecord: true, GroupDeliveryBackoff: true, GroupDeliveryBackoffMax: true,
}

// resetKind is a share.auto.offset.reset strategy.
type resetKind int8

const (
	resetLatest resetKind = iota
	resetEarliest
	resetByDuration
)

// groupConfig is the resolved share configuration of one group.
type groupConfig struct {
	sessionTimeout    time.Duration
	heartbeatInterval time.Duration
	lockDuration      time.Duration
	deliveryLimit     int16
	reset             resetKind
	resetDuration     time.Duration // for resetByDuration
	readCommitted     bool
	dlqTopic          string // "" for none
	dlqCopy           bool
	backoff           time.Duration
	backoffMax        time.Duration
}

// defaultGroupConfig is the configuration of a group that sets nothing.
func (c *Coordinator) defaultGroupConfig() groupConfig {
	return groupConfig{
		sessionTimeout:    c.cfg.SessionTimeout,
		heartbeatInterval: c.cfg.HeartbeatInterval,
		lockDuration:      c.cfg.RecordLockDuration,
		deliveryLimit:     int16(c.cfg.DeliveryCountLimit),
		backoff:           c.cfg.DeliveryBackoff,
		backoffMax:        c.cfg.DeliveryBackoffMax,
		dlqCopy:           true, // Ferry copies the record by default; Kafka does not
	}
}

// GroupConfigDefaults returns every group config a share group may set
// with the value it has when not set (the broker defaults), for
// DescribeConfigs of a GROUP resource.
func (c *Coordinator) GroupConfigDefaults() map[string]string {
	d := c.defaultGroupConfig()
	return map[string]string{
		GroupSessionTimeout:     strconv.FormatInt(d.sessionTimeout.Milliseconds(), 10),
		GroupHeartbeatInterval:  strconv.FormatInt(d.heartbeatInterval.Milliseconds(), 10),
		GroupRecordLockDuration: strconv.FormatInt(d.lockDuration.Milliseconds(), 10),
		GroupDeliveryCountLimit: strconv.Itoa(int(d.deliveryLimit)),
		GroupAutoOffsetReset:    "latest",
		GroupIsolationLevel:     isolationReadUncommitted,
		GroupDLQTopic:           "",
		GroupDLQCopyRecord:      "true",
		GroupDeliveryBackoff:    strconv.FormatInt(d.backoff.Milliseconds(), 10),
		GroupDeliveryBackoffMax: strconv.FormatInt(d.backoffMax.Milliseconds(), 10),
	}
}

// ValidateGroupConfig checks one group config value against Kafka's rules
// and this broker's bounds, as IncrementalAlterConfigs must before storing
// it (INVALID_CONFIG otherwise). Names this package does not know are
// refused too, so the server should call it only for share configs (those
// of GroupConfigDefaults). A value of "" for a numeric config means unset
// and is refused; delete the config instead.
func (c *Coordinator) ValidateGroupConfig(name, value string) error {
	g := c.defaultGroupConfig()
	return c.applyGroupConfig(&g, name, value)
}

// resolveGroupConfig parses overrides over the defaults. Values that do
// not parse (they were validated when set, but bounds may have changed
// since) are ignored with a warning.
func (c *Coordinator) resolveGroupConfig(group string, overrides map[string]string) groupConfig {
	g := c.defaultGroupConfig()
	for name, value := range overrides {
		if !groupConfigNames[name] {
			continue // not a share config
		}
		if err := c.applyGroupConfig(&g, name, value); err != nil {
			c.log.Warn("ignoring group config", "group", group, "config", name, "value", value, "err", err)
		}
	}
	if g.sessionTimeout <= g.heartbeatInterval {
		c.log.Warn("share.session.timeout.ms not above share.heartbeat.interval.ms; using broker defaults", "group", group)
		g.sessionTimeout, g.heartbeatInterval = c.cfg.SessionTimeout, c.cfg.HeartbeatInterval
	}
	return g
}

func (c *Coordinator) applyGroupConfig(g *groupConfig, name, value string) error {
	ms := func(lo, hi time.Duration) (time.Duration, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: %s=%q is not an integer", ErrConfig, name, value)
		}
		d := time.Duration(n) * time.Millisecond
		if d < lo || d > hi {
			return 0, fmt.Errorf("%w: %s must be between %d and %d", ErrConfig, name, lo.Milliseconds(), hi.Milliseconds())
		}
		return d, nil
	}
	var err error
	switch name {
	case GroupSessionTimeout:
		g.sessionTimeout, err = ms(c.cfg.MinSessionTimeout, c.cfg.MaxSessionTimeout)
	case GroupHeartbeatInterval:
		g.heartbeatInterval, err = ms(c.cfg.MinHeartbeatInterval, c.cfg.MaxHeartbeatInterval)
	case GroupRecordLockDuration:
		g.lockDuration, err = ms(c.cfg.MinRecordLockDuration, c.cfg.MaxRecordLockDuration)
	case GroupDeliveryCountLimit:
		n, perr := strconv.Atoi(strings.TrimSpace(value))
		switch {
		case perr != nil:
			err = fmt.Errorf("%w: %s=%q is not an integer", ErrConfig, name, value)
		case n < c.cfg.MinDeliveryCountLimit || n > c.cfg.MaxDeliveryCountLimit:
			err = fmt.Errorf("%w: %s must be between %d and %d", ErrConfig, name, c.cfg.MinDeliveryCountLimit, c.cfg.MaxDeliveryCountLimit)
		default:
			g.deliveryLimit = int16(n)
		}
	case GroupAutoOffsetReset:
		g.reset, g.resetDuration, err = parseAutoOffsetReset(value)
	case GroupIsolationLevel:
		switch strings.ToLower(strings.TrimSpace(value)) {
		case isolationReadUncommitted:
			g.readCommitted = false
		case isolationReadCommitted:
			g.readCommitted = true
		default:
			err = fmt.Errorf("%w: %s must be read_committed or read_uncommitted", ErrConfig, name)
		}
	case GroupDLQTopic:
		t := strings.TrimSpace(value)
		switch {
		case t == "":
		case strings.HasPrefix(t, "__"):
			err = fmt.Errorf("%w: %s %q cannot start with __", ErrConfig, name, t)
		case !strings.HasPrefix(t, c.cfg.DLQTopicPrefix):
			err = fmt.Errorf("%w: %s %q does not start with the prefix %q (errors.deadletterqueue.topic.name.prefix)", ErrConfig, name, t, c.cfg.DLQTopicPrefix)
		}
		if err == nil {
			g.dlqTopic = t
		}
	case GroupDLQCopyRecord:
		b, perr := strconv.ParseBool(strings.TrimSpace(value))
		if perr != nil {
			err = fmt.Errorf("%w: %s must be true or false", ErrConfig, name)
		}
		g.dlqCopy = b
	case GroupDeliveryBackoff:
		g.backoff, err = ms(0, time.Duration(1<<31-1)*time.Millisecond)
	case GroupDeliveryBackoffMax:
		g.backoffMax, err = ms(0, time.Duration(1<<31-1)*time.Millisecond)
	default:
		err = fmt.Errorf("%w: %s is not a share group config", ErrConfig, name)
	}
	return err
}

// parseAutoOffsetReset parses share.auto.offset.reset: "latest",
// "earliest" or "by_duration:<ISO-8601 duration>" (PnDTnHnMn.nS, as
// java.time.Duration parses it; not negative).
func parseAutoOffsetReset(v string) (resetKind, time.Duration, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	switch {
	case s == "latest":
		return resetLatest, 0, nil
	case s == "earliest":
		return resetEarliest, 0, nil
	case strings.HasPrefix(s, "by_duration:"):
		d, err := parseISODuration(strings.TrimSpace(v[strings.Index(v, ":")+1:]))
		if err != nil || d < 0 {
			return 0, 0, fmt.Errorf("%w: %s=%q: %v", ErrConfig, GroupAutoOffsetReset, v, err)
		}
		return resetByDuration, d, nil
	}
	return 0, 0, fmt.Errorf("%w: %s must be latest, earliest or by_duration:<ISO 8601 duration>", ErrConfig, GroupAutoOffsetReset)
}

// parseISODuration parses the PnDTnHnMn.nS subset of ISO 8601 that
// java.time.Duration.parse accepts (days, hours, minutes, seconds with a
// fraction; an optional sign on the whole).
func parseISODuration(s string) (time.Duration, error) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "P") || len(s) < 3 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	s = s[1:]
	var total time.Duration
	inTime := false
	units := 0
	for len(s) > 0 {
		if s[0] == 'T' {
			if inTime {
				return 0, fmt.Errorf("bad duration")
			}
			inTime, s = true, s[1:]
			continue
		}
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == '-') {
			i++
		}
		if i == 0 || i == len(s) {
			return 0, fmt.Errorf("bad duration")
		}
		num, unit := s[:i], s[i]
		s = s[i+1:]
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration number %q", num)
		}
		var d time.Duration
		switch {
		case unit == 'D' && !inTime:
			d = 24 * time.Hour
		case unit == 'H' && inTime:
			d = time.Hour
		case unit == 'M' && inTime:
			d = time.Minute
		case unit == 'S' && inTime:
			d = time.Second
		default:
			return 0, fmt.Errorf("bad duration unit %q", unit)
		}
		if f*float64(d) > float64(1<<62) || f*float64(d) < -float64(1<<62) {
			return 0, fmt.Errorf("duration too large")
		}
		total += time.Duration(f * float64(d))
		units++
	}
	if units == 0 {
		return 0, fmt.Errorf("bad duration")
	}
	if neg {
		total = -total
	}
	return total, nil
}

// backoffFor returns how long a record released after its count-th
// delivery waits before it is delivered again.
func (g *groupConfig) backoffFor(count int16) time.Duration {
	if g.backoff <= 0 || count <= 0 {
		return 0
	}
	d := g.backoff
	for i := int16(1); i < count && d < g.backoffMax; i++ {
		d *= 2
	}
	return min(d, g.backoffMax)
}
