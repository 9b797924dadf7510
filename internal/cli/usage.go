package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newUsage() *cobra.Command {
	var cf clientFlags
	var since, until string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "usage NAME",
		Short: "Show what a project's functions cost, and what concurrency saved",
		Long: `Show a project's invocations and compute over a window:
instance GB-s (instance busy time x memory, what shoal's model bills),
provisioned GB-s (instance lifetime x memory), classic GB-s (the sum of
invocation durations x memory, what one invocation per instance would
bill), the instances' CPU time, the savings (1 - instance/classic) and
latency percentiles. An invocation lasts until its response ended and its
waitUntil work settled.
Counters live in serve's memory and start anew when serve restarts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := cf.client()
			if err != nil {
				return err
			}
			u, err := c.Usage(cmd.Context(), args[0], since, until)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(u)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "project\t%s\n", u.Project)
			fmt.Fprintf(tw, "window\t%s .. %s\n", u.Since.Local().Format("2006-01-02 15:04:05"), u.Until.Local().Format("15:04:05"))
			fmt.Fprintf(tw, "invocations\t%d (%d errors)\n", u.Invocations, u.Errors)
			fmt.Fprintf(tw, "peak instances\t%d\n", u.PeakInstances)
			fmt.Fprintf(tw, "instance GB-s\t%.3f\n", u.InstanceGBSeconds)
			fmt.Fprintf(tw, "provisioned GB-s\t%.3f\n", u.ProvisionedGBSeconds)
			fmt.Fprintf(tw, "classic GB-s\t%.3f\n", u.ClassicGBSeconds)
			fmt.Fprintf(tw, "active CPU\t%.3f s\n", u.ActiveCPUSeconds)
			fmt.Fprintf(tw, "peak instance memory\t%.0f MB resident\n", u.PeakRSSMB)
			fmt.Fprintf(tw, "savings\t%.1f%%\n", u.Savings*100)
			fmt.Fprintf(tw, "concurrency limit\tnew instances start at %d per event loop; running: %v\n", u.LearnedLimit, u.ConcurrencyLimits)
			fmt.Fprintf(tw, "event loops\trunning: %v\n", u.EventLoops)
			fmt.Fprintf(tw, "latency p50 / p99\t%.1f / %.1f ms\n", u.LatencyP50Ms, u.LatencyP99Ms)
			fmt.Fprintf(tw, "ttfb p50 / p99\t%.1f / %.1f ms\n", u.TTFBP50Ms, u.TTFBP99Ms)
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(u.Instances) == 0 {
				return nil
			}
			fmt.Fprintln(out)
			tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "instance\tstarted\tstopped\tbusy s\tcpu s\tpeak MB\tmemory MB")
			for _, in := range u.Instances {
				stopped := "running"
				if in.Stopped != nil {
					stopped = in.Stopped.Local().Format("15:04:05")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.3f\t%.0f\t%d\n", in.ID, in.Started.Local().Format("15:04:05"), stopped,
					in.BusySeconds, in.CPUSeconds, in.PeakRSSMB, in.MemoryMB)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&since, "since", "1h", "window start: a duration back from now or an RFC 3339 time")
	cmd.Flags().StringVar(&until, "until", "", "window end, like --since (default: now)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cf.register(cmd)
	return cmd
}
