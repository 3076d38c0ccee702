package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/meta"
)

// Config definitions, defaults and validation live in package meta
// (meta/configs.go); this file reads them for the handlers.

// brokerSettings is the broker configs as the handlers read them.
type brokerSettings struct{ *meta.Settings }

// settings returns the current broker configs.
func (s *Server) settings() brokerSettings { return brokerSettings{s.meta.Settings()} }

func (b brokerSettings) int64(name string) int64 { return b.Int64(name) }

func (b brokerSettings) bool(name string) bool { return b.Bool(name) }

// describeConfigs turns config entries into DescribeConfigs form.
func describeConfigs(entries []meta.ConfigEntry) []kmsg.DescribeConfigsResponseResourceConfig {
	out := make([]kmsg.DescribeConfigsResponseResourceConfig, 0, len(entries))
	for _, e := range entries {
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = e.Name
		c.Value = e.Value
		c.Source = kmsg.ConfigSource(e.Source)
		c.IsDefault = e.IsDefault
		c.ReadOnly = e.ReadOnly
		c.IsSensitive = e.Sensitive
		c.ConfigType = kmsg.ConfigType(e.Type)
		if e.Doc != "" {
			c.Documentation = kmsg.StringPtr(e.Doc)
		}
		for _, syn := range e.Synonyms {
			sy := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			sy.Name = syn.Name
			sy.Value = kmsg.StringPtr(syn.Value)
			sy.Source = kmsg.ConfigSource(syn.Source)
			c.ConfigSynonyms = append(c.ConfigSynonyms, sy)
		}
		out = append(out, c)
	}
	return out
}
