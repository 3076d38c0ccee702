package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func clusterInfoFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("cluster info") }

type brokerInfo struct {
	NodeID int32  `json:"node_id"`
	Host   string `json:"host"`
	Port   int32  `json:"port"`
	Rack   string `json:"rack,omitempty"`
}

type apiVersion struct {
	Key  int16  `json:"key"`
	Name string `json:"name"`
	Min  int16  `json:"min"`
	Max  int16  `json:"max"`
}

type clusterInfo struct {
	ClusterID   string                 `json:"cluster_id"`
	Controller  int32                  `json:"controller"`
	Brokers     []brokerInfo           `json:"brokers"`
	APIVersions map[int32][]apiVersion `json:"api_versions"`
}

func runClusterInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := clusterInfoFlags()
	_, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	md, err := c.adm.BrokerMetadata(rctx)
	if err != nil {
		return c.fail("cluster info", err)
	}
	info := clusterInfo{ClusterID: md.Cluster, Controller: md.Controller, APIVersions: map[int32][]apiVersion{}}
	for _, b := range md.Brokers {
		bi := brokerInfo{NodeID: b.NodeID, Host: b.Host, Port: b.Port}
		if b.Rack != nil {
			bi.Rack = *b.Rack
		}
		info.Brokers = append(info.Brokers, bi)
	}
	sort.Slice(info.Brokers, func(i, j int) bool { return info.Brokers[i].NodeID < info.Brokers[j].NodeID })
	versions, err := c.adm.ApiVersions(rctx)
	if err != nil {
		return c.fail("cluster info: API versions", err)
	}
	for id, v := range versions {
		if v.Err != nil {
			return c.fail(fmt.Sprintf("cluster info: API versions of broker %d", id), v.Err)
		}
		list := []apiVersion{}
		v.EachKeySorted(func(key, min, max int16) {
			list = append(list, apiVersion{Key: key, Name: apiName(key), Min: min, Max: max})
		})
		info.APIVersions[id] = list
	}
	if cf.json() {
		return writeJSON(stdout, info)
	}
	fmt.Fprintf(stdout, "CLUSTER-ID %s  CONTROLLER %d\n\n", info.ClusterID, info.Controller)
	err = writeTable(stdout, []string{"BROKER", "HOST", "PORT", "RACK"}, info.Brokers, func(b brokerInfo) []any {
		return []any{b.NodeID, b.Host, b.Port, dash(b.Rack)}
	})
	if err != nil {
		return err
	}
	ids := make([]int32, 0, len(info.APIVersions))
	for id := range info.APIVersions {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		fmt.Fprintf(stdout, "\nAPI VERSIONS of broker %d\n", id)
		err = writeTable(stdout, []string{"KEY", "NAME", "MIN", "MAX"}, info.APIVersions[id], func(v apiVersion) []any {
			return []any{v.Key, v.Name, v.Min, v.Max}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "" {
		return n
	}
	return "unknown"
}
