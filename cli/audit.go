package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/node"
	"github.com/spf13/cobra"
)

func auditCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with the home's audit log"}
	cmd.AddCommand(auditVerifyCommand(stdout, stderr))
	return cmd
}

// verifyReport is what `audit verify --json` prints.
type verifyReport struct {
	Intact  bool           `json:"intact"`
	Home    string         `json:"home"`
	Records uint64         `json:"records"`
	Head    audit.Head     `json:"head"`
	Anchor  *audit.Head    `json:"anchor,omitempty"`
	Problem *audit.Problem `json:"problem,omitempty"`
}

// auditVerifyCommand reads every audit record and checks the hash chain.
// It runs offline against the data directory (stop the hub first) or joins
// an external bus with --nats.
func auditVerifyCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and exit non-zero on any tampering (stop the hub first, or pass --nats)",
		Args:  cobra.NoArgs,
	}
	resolve := configFlags(cmd)
	var asJSON bool
	var expect []string
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	cmd.Flags().StringArrayVar(&expect, "expect-head", nil,
		"a head printed by an earlier verify (SEQ:HASH), kept outside the hub; the log must still contain it (repeatable)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var heads []audit.Head
		for _, s := range expect {
			h, err := audit.ParseHead(s)
			if err != nil {
				return homemesh.Invalid("expect-head", "%s", homemesh.ErrorMessage(err))
			}
			heads = append(heads, h)
		}
		cfg, err := resolve()
		if err != nil {
			return err
		}
		log := newLogger(stderr, cfg.LogLevel)
		off, err := node.OpenOffline(cfg, log)
		if err != nil {
			return err
		}
		defer off.Close()
		l, err := audit.Open(cmd.Context(), off.Bus, off.HomeID(), audit.Options{Log: log})
		if err != nil {
			return err
		}
		res, err := l.Verify(cmd.Context(), heads...)
		var problem *audit.Problem
		if err != nil && !errors.As(err, &problem) {
			return fmt.Errorf("read the audit log: %w", err)
		}
		report := verifyReport{Intact: problem == nil, Home: off.HomeID(), Records: res.Records, Head: res.Head,
			Anchor: res.Anchor, Problem: problem}
		if asJSON {
			data, _ := json.Marshal(report)
			fmt.Fprintln(stdout, string(data))
		} else if problem == nil {
			fmt.Fprintf(stdout, "audit log intact: %d records, head %s\n", res.Records, res.Head)
			if res.Records > 0 {
				fmt.Fprintln(stdout, "keep this head outside the hub; pass it to a later verify with --expect-head to catch a rewritten log")
			}
		} else {
			fmt.Fprintf(stdout, "audit log TAMPERED at record %d (%s): %s\n", problem.Seq, problem.Reason, problem.Detail)
			fmt.Fprintf(stdout, "records 1 to %d verify; the last good head is %s\n", res.Head.Seq, res.Head)
		}
		if problem != nil {
			return fmt.Errorf("the audit log does not verify: %w", problem)
		}
		return nil
	}
	return cmd
}
