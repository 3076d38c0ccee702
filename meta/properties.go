package meta

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// loadMetaProperties reads (or writes, on first start) meta.properties:
// the cluster id and node id of this data directory, as Kafka keeps them.
func loadMetaProperties(dir string, nodeID int32, want string) (string, error) {
	path := filepath.Join(dir, "meta.properties")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var id [16]byte
		rand.Read(id[:])
		clusterID := base64.RawURLEncoding.EncodeToString(id[:])
		if want != "" {
			clusterID = want
		}
		content := fmt.Sprintf("#\n#Written by ferry\nversion=1\ncluster.id=%s\nnode.id=%d\n", clusterID, nodeID)
		if err := writeFileSync(path, []byte(content)); err != nil {
			return "", err
		}
		return clusterID, syncDir(dir)
	}
	if err != nil {
		return "", err
	}
	props := ParseProperties(string(b))
	id := props["cluster.id"]
	if id == "" {
		return "", fmt.Errorf("meta: %s has no cluster.id", path)
	}
	if want != "" && id != want {
		return "", fmt.Errorf("meta: %s belongs to cluster %s, this node is configured for cluster %s (cluster.id, or, on a cluster's first start, derived from controller.quorum.voters)", path, id, want)
	}
	if n, ok := props["node.id"]; ok && n != strconv.Itoa(int(nodeID)) {
		return "", fmt.Errorf("meta: %s belongs to node.id %s, this broker is %d", path, n, nodeID)
	}
	return id, nil
}

// ReadClusterID returns the cluster.id of the meta.properties in dir, ""
// when there is none yet (a fresh data directory). A node of a cluster
// keeps the id it started with: its voters may change since.
func ReadClusterID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.properties"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return ParseProperties(string(b))["cluster.id"], nil
}

// ParseProperties reads Java properties, as in meta.properties or a file
// given to `ferry serve -config`: key=value or key: value lines, # and !
// comments.
func ParseProperties(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			m[line] = ""
			continue
		}
		m[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return m
}
