package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// Users (SCRAM credentials), ACLs and client quotas.

type userOpts struct {
	client     *clientFlags
	mechanism  string
	iterations int
	password   string
}

func userFlags(name string, create bool) (*flag.FlagSet, *userOpts) {
	fs := newFlagSet(name)
	o := &userOpts{client: addClientFlags(fs)}
	def := auth.ScramSHA256
	if !create {
		def = ""
	}
	fs.StringVar(&o.mechanism, "mechanism", def, "SCRAM-SHA-256 or SCRAM-SHA-512 (delete: default both)")
	if create {
		fs.IntVar(&o.iterations, "iterations", 8192, "PBKDF2 iterations (4096-16384)")
		fs.StringVar(&o.password, "password", "", "the password (default: the first line of stdin)")
	}
	return fs, o
}

func userCreateFlags() (*flag.FlagSet, *userOpts)  { return userFlags("user create", true) }
func userDeleteFlags() (*flag.FlagSet, *userOpts)  { return userFlags("user delete", false) }
func userListFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("user list") }

func scramMechanism(name string) (kadm.ScramMechanism, error) {
	switch strings.ToUpper(name) {
	case auth.ScramSHA256:
		return kadm.ScramSha256, nil
	case auth.ScramSHA512:
		return kadm.ScramSha512, nil
	}
	return 0, usageError("-mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", name)
}

func runUserCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := userCreateFlags()
	users, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	mech, err := scramMechanism(o.mechanism)
	if err != nil {
		return err
	}
	password := o.password
	if password == "" {
		sc := bufio.NewScanner(stdin)
		if !sc.Scan() || sc.Text() == "" {
			return usageError("user create: give -password or the password on stdin")
		}
		password = sc.Text()
	}
	var ups []kadm.UpsertSCRAM
	for _, u := range users {
		ups = append(ups, kadm.UpsertSCRAM{User: u, Mechanism: mech, Iterations: int32(o.iterations), Password: password})
	}
	res, err := c.adm.AlterUserSCRAMs(rctx, nil, ups)
	if err != nil {
		return c.fail("user create", err)
	}
	return userResults(stdout, o.client, res, "created")
}

func runUserDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := userDeleteFlags()
	users, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	mechs := []kadm.ScramMechanism{kadm.ScramSha256, kadm.ScramSha512}
	if o.mechanism != "" {
		m, err := scramMechanism(o.mechanism)
		if err != nil {
			return err
		}
		mechs = []kadm.ScramMechanism{m}
	}
	var dels []kadm.DeleteSCRAM
	described, err := c.adm.DescribeUserSCRAMs(rctx, users...)
	if err != nil && !errors.Is(err, kerr.ResourceNotFound) {
		return c.fail("user delete", err)
	}
	for _, u := range users {
		for _, ci := range described[u].CredInfos {
			for _, m := range mechs {
				if ci.Mechanism == m {
					dels = append(dels, kadm.DeleteSCRAM{User: u, Mechanism: m})
				}
			}
		}
		if len(dels) == 0 || dels[len(dels)-1].User != u {
			return fmt.Errorf("user delete: user %q has no such SCRAM credential", u)
		}
	}
	res, err := c.adm.AlterUserSCRAMs(rctx, dels, nil)
	if err != nil {
		return c.fail("user delete", err)
	}
	return userResults(stdout, o.client, res, "deleted")
}

func userResults(stdout io.Writer, cf *clientFlags, res kadm.AlteredUserSCRAMs, what string) error {
	type row struct {
		User   string `json:"user"`
		Result string `json:"result"`
	}
	var rows []row
	var failed error
	for _, r := range res.Sorted() {
		result := what
		if r.Err != nil {
			result = r.Err.Error()
			if r.ErrMessage != "" {
				result += ": " + r.ErrMessage
			}
			failed = fmt.Errorf("user %s: %s", r.User, result)
		}
		rows = append(rows, row{r.User, result})
	}
	if err := writeRows(stdout, cf, rows, []string{"USER", "RESULT"}, func(r row) []any { return []any{r.User, r.Result} }); err != nil {
		return err
	}
	return failed
}

func runUserList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := userListFlags()
	_, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	described, err := c.adm.DescribeUserSCRAMs(rctx)
	if err != nil {
		return c.fail("user list", err)
	}
	type row struct {
		User       string `json:"user"`
		Mechanism  string `json:"mechanism"`
		Iterations int32  `json:"iterations"`
	}
	rows := []row{}
	for _, u := range described.Sorted() {
		for _, ci := range u.CredInfos {
			rows = append(rows, row{u.User, ci.Mechanism.String(), ci.Iterations})
		}
	}
	return writeRows(stdout, cf, rows, []string{"USER", "MECHANISM", "ITERATIONS"}, func(r row) []any { return []any{r.User, r.Mechanism, r.Iterations} })
}

// aclOpts are the flags naming ACLs: for create, one ACL; for list and
// delete, a filter where an absent flag matches anything.
type aclOpts struct {
	client          *clientFlags
	principal, host string
	operation       string
	deny, allow     bool
	topic, group    string
	transactionalID string
	cluster         bool
	prefixed        bool
}

func aclFlags(name string) (*flag.FlagSet, *aclOpts) {
	fs := newFlagSet(name)
	o := &aclOpts{client: addClientFlags(fs)}
	fs.StringVar(&o.principal, "principal", "", "principal, User:NAME (a bare NAME means User:NAME; User:* is everyone)")
	fs.StringVar(&o.host, "host", "", "client address the ACL applies to (create: default *, every address)")
	fs.StringVar(&o.operation, "operation", "", "READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL")
	fs.BoolVar(&o.deny, "deny", false, "a DENY ACL (default ALLOW)")
	fs.BoolVar(&o.allow, "allow", false, "list/delete: only ALLOW ACLs")
	fs.StringVar(&o.topic, "topic", "", "the topic resource (* for every topic)")
	fs.StringVar(&o.group, "group", "", "the group resource (* for every group)")
	fs.StringVar(&o.transactionalID, "transactional-id", "", "the transactional id resource")
	fs.BoolVar(&o.cluster, "cluster", false, "the cluster resource")
	fs.BoolVar(&o.prefixed, "prefixed", false, "the resource name is a prefix")
	return fs, o
}

func aclCreateFlags() (*flag.FlagSet, *aclOpts) { return aclFlags("acl create") }
func aclListFlags() (*flag.FlagSet, *aclOpts)   { return aclFlags("acl list") }
func aclDeleteFlags() (*flag.FlagSet, *aclOpts) { return aclFlags("acl delete") }

// resource returns the resource the flags name; ok is false for none.
func (o *aclOpts) resource() (auth.ResourceType, string, bool, error) {
	var rt auth.ResourceType
	var name string
	n := 0
	for _, r := range []struct {
		set  bool
		typ  auth.ResourceType
		name string
	}{{o.topic != "", auth.ResourceTopic, o.topic}, {o.group != "", auth.ResourceGroup, o.group}, {o.transactionalID != "", auth.ResourceTransactionalID, o.transactionalID}, {o.cluster, auth.ResourceCluster, auth.ClusterName}} {
		if r.set {
			rt, name = r.typ, r.name
			n++
		}
	}
	if n > 1 {
		return 0, "", false, usageError("name one of -topic, -group, -transactional-id and -cluster")
	}
	return rt, name, n == 1, nil
}

func (o *aclOpts) principalName() string {
	if o.principal != "" && !strings.Contains(o.principal, ":") {
		return "User:" + o.principal
	}
	return o.principal
}

func runACLCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := aclCreateFlags()
	_, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	rt, name, ok, err := o.resource()
	if err != nil {
		return err
	}
	if !ok || o.principal == "" || o.operation == "" {
		return usageError("acl create needs -principal, -operation and a resource (-topic, -group, -transactional-id or -cluster)")
	}
	req := kmsg.NewPtrCreateACLsRequest()
	for op := range strings.SplitSeq(o.operation, ",") {
		parsed, err := auth.ParseOperation(op)
		if err != nil {
			return usageError("-operation: %v", err)
		}
		cr := kmsg.NewCreateACLsRequestCreation()
		cr.ResourceType, cr.ResourceName = kmsg.ACLResourceType(rt), name
		cr.ResourcePatternType = kmsg.ACLResourcePatternTypeLiteral
		if o.prefixed {
			cr.ResourcePatternType = kmsg.ACLResourcePatternTypePrefixed
		}
		cr.Principal, cr.Host = o.principalName(), first(o.host, "*")
		cr.Operation, cr.PermissionType = kmsg.ACLOperation(parsed), kmsg.ACLPermissionTypeAllow
		if o.deny {
			cr.PermissionType = kmsg.ACLPermissionTypeDeny
		}
		req.Creations = append(req.Creations, cr)
	}
	resp, err := req.RequestWith(rctx, c.cl)
	if err != nil {
		return c.fail("acl create", err)
	}
	for _, r := range resp.Results {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			msg := ""
			if r.ErrorMessage != nil {
				msg = ": " + *r.ErrorMessage
			}
			return fmt.Errorf("acl create: %w%s", err, msg)
		}
	}
	fmt.Fprintf(stdout, "created %d ACL(s)\n", len(req.Creations))
	return nil
}

// filter is the ACL filter of the flags.
func (o *aclOpts) filter() (kmsg.DeleteACLsRequestFilter, error) {
	f := kmsg.NewDeleteACLsRequestFilter()
	f.ResourceType, f.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	rt, name, ok, err := o.resource()
	if err != nil {
		return f, err
	}
	if ok {
		f.ResourceType, f.ResourceName = kmsg.ACLResourceType(rt), &name
		f.ResourcePatternType = kmsg.ACLResourcePatternTypeLiteral
		if o.prefixed {
			f.ResourcePatternType = kmsg.ACLResourcePatternTypePrefixed
		}
	}
	if o.principal != "" {
		p := o.principalName()
		f.Principal = &p
	}
	if o.host != "" {
		f.Host = &o.host
	}
	if o.operation != "" {
		op, err := auth.ParseOperation(o.operation)
		if err != nil {
			return f, usageError("-operation: %v", err)
		}
		f.Operation = kmsg.ACLOperation(op)
	}
	switch {
	case o.deny && o.allow:
		return f, usageError("-deny and -allow together match nothing")
	case o.deny:
		f.PermissionType = kmsg.ACLPermissionTypeDeny
	case o.allow:
		f.PermissionType = kmsg.ACLPermissionTypeAllow
	}
	return f, nil
}

type aclRow struct {
	ResourceType string `json:"resource_type"`
	Resource     string `json:"resource"`
	Pattern      string `json:"pattern"`
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    string `json:"operation"`
	Permission   string `json:"permission"`
}

func writeACLs(stdout io.Writer, cf *clientFlags, rows []aclRow) error {
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		return fmt.Sprint(a.ResourceType, a.Resource, a.Principal, a.Operation) < fmt.Sprint(b.ResourceType, b.Resource, b.Principal, b.Operation)
	})
	return writeRows(stdout, cf, rows, []string{"TYPE", "RESOURCE", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"}, func(r aclRow) []any {
		return []any{r.ResourceType, r.Resource, r.Pattern, r.Principal, r.Host, r.Operation, r.Permission}
	})
}

func runACLList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := aclListFlags()
	_, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	f, err := o.filter()
	if err != nil {
		return err
	}
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourceName, req.ResourcePatternType = f.ResourceType, f.ResourceName, f.ResourcePatternType
	req.Principal, req.Host, req.Operation, req.PermissionType = f.Principal, f.Host, f.Operation, f.PermissionType
	resp, err := req.RequestWith(rctx, c.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return c.fail("acl list", err)
	}
	rows := []aclRow{}
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			rows = append(rows, aclRow{auth.ResourceType(r.ResourceType).String(), r.ResourceName, auth.PatternType(r.ResourcePatternType).String(), a.Principal, a.Host, auth.Operation(a.Operation).String(), auth.Permission(a.PermissionType).String()})
		}
	}
	return writeACLs(stdout, o.client, rows)
}

func runACLDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := aclDeleteFlags()
	_, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	f, err := o.filter()
	if err != nil {
		return err
	}
	req := kmsg.NewPtrDeleteACLsRequest()
	req.Filters = append(req.Filters, f)
	resp, err := req.RequestWith(rctx, c.cl)
	if err == nil && len(resp.Results) == 1 {
		err = kerr.ErrorForCode(resp.Results[0].ErrorCode)
	}
	if err != nil {
		return c.fail("acl delete", err)
	}
	rows := []aclRow{}
	for _, m := range resp.Results[0].MatchingACLs {
		rows = append(rows, aclRow{auth.ResourceType(m.ResourceType).String(), m.ResourceName, auth.PatternType(m.ResourcePatternType).String(), m.Principal, m.Host, auth.Operation(m.Operation).String(), auth.Permission(m.PermissionType).String()})
	}
	return writeACLs(stdout, o.client, rows)
}

type quotaOpts struct {
	client                       *clientFlags
	user, clientID               string
	defaultUser, defaultClientID bool
	set                          kvFlag
	remove                       listFlag
}

func quotaSetFlags() (*flag.FlagSet, *quotaOpts) {
	fs := newFlagSet("quota set")
	o := &quotaOpts{client: addClientFlags(fs)}
	fs.StringVar(&o.user, "user", "", "the user (a principal's name: alice, ANONYMOUS, or a certificate's subject)")
	fs.StringVar(&o.clientID, "client-id", "", "the client id")
	fs.BoolVar(&o.defaultUser, "default-user", false, "every user without a quota of its own")
	fs.BoolVar(&o.defaultClientID, "default-client-id", false, "every client id without a quota of its own")
	fs.Var(&o.set, "set", "quota=value: producer_byte_rate, consumer_byte_rate (bytes/s), request_percentage (repeatable)")
	fs.Var(&o.remove, "delete", "quota to remove (repeatable)")
	return fs, o
}

func quotaListFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("quota list") }

func runQuotaSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := quotaSetFlags()
	_, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	var entity []kadm.ClientQuotaEntityComponent
	switch {
	case o.user != "" && o.defaultUser:
		return usageError("-user and -default-user together")
	case o.user != "":
		entity = append(entity, kadm.ClientQuotaEntityComponent{Type: "user", Name: &o.user})
	case o.defaultUser:
		entity = append(entity, kadm.ClientQuotaEntityComponent{Type: "user"})
	}
	switch {
	case o.clientID != "" && o.defaultClientID:
		return usageError("-client-id and -default-client-id together")
	case o.clientID != "":
		entity = append(entity, kadm.ClientQuotaEntityComponent{Type: "client-id", Name: &o.clientID})
	case o.defaultClientID:
		entity = append(entity, kadm.ClientQuotaEntityComponent{Type: "client-id"})
	}
	if len(entity) == 0 || len(o.set.pairs)+len(o.remove) == 0 {
		return usageError("quota set needs -user/-default-user and/or -client-id/-default-client-id, and -set or -delete")
	}
	var ops []kadm.AlterClientQuotaOp
	for _, p := range o.set.pairs {
		v, err := strconv.ParseFloat(p[1], 64)
		if err != nil {
			return usageError("-set %s=%s: not a number", p[0], p[1])
		}
		ops = append(ops, kadm.AlterClientQuotaOp{Key: p[0], Value: v})
	}
	for _, k := range o.remove {
		ops = append(ops, kadm.AlterClientQuotaOp{Key: k, Remove: true})
	}
	res, err := c.adm.AlterClientQuotas(rctx, []kadm.AlterClientQuotaEntry{{Entity: entity, Ops: ops}})
	if err != nil {
		return c.fail("quota set", err)
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("quota set: %w %s", r.Err, r.ErrMessage)
		}
	}
	fmt.Fprintln(stdout, "quotas changed")
	return nil
}

func runQuotaList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := quotaListFlags()
	_, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	var all []kadm.DescribedClientQuota
	// Entities with a user, then those with a client id only.
	for _, comps := range [][]kadm.DescribeClientQuotaComponent{{{Type: "user", MatchType: 2}}, {{Type: "client-id", MatchType: 2}}, {{Type: "ip", MatchType: 2}}} {
		got, err := c.adm.DescribeClientQuotas(rctx, false, comps)
		if err != nil {
			return c.fail("quota list", err)
		}
		for _, q := range got {
			if comps[0].Type == "client-id" && hasType(q.Entity, "user") {
				continue
			}
			all = append(all, q)
		}
	}
	type row struct {
		User     string             `json:"user,omitempty"`
		ClientID string             `json:"client_id,omitempty"`
		IP       string             `json:"ip,omitempty"`
		Quotas   map[string]float64 `json:"quotas"`
	}
	rows := []row{}
	for _, q := range all {
		r := row{Quotas: map[string]float64{}}
		for _, e := range q.Entity {
			name := "<default>"
			if e.Name != nil {
				name = *e.Name
			}
			switch e.Type {
			case "user":
				r.User = name
			case "client-id":
				r.ClientID = name
			case "ip":
				r.IP = name
			}
		}
		for _, v := range q.Values {
			r.Quotas[v.Key] = v.Value
		}
		rows = append(rows, r)
	}
	return writeRows(stdout, cf, rows, []string{"USER", "CLIENT-ID", "IP", "QUOTAS"}, func(r row) []any {
		var qs []string
		for k, v := range r.Quotas {
			qs = append(qs, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
		sort.Strings(qs)
		return []any{dash(r.User), dash(r.ClientID), dash(r.IP), strings.Join(qs, ",")}
	})
}

func hasType(e []kadm.ClientQuotaEntityComponent, t string) bool {
	for _, c := range e {
		if c.Type == t {
			return true
		}
	}
	return false
}
