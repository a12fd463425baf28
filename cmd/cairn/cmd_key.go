package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/repo"
)

func newKeyCmd(g *globals) *cobra.Command {
	var newPassFile string
	newPassword := func() (string, error) {
		pw, err := readSecret(newPassFile, "CAIRN_NEW_PASSWORD", "new password: ", true)
		if err == nil && pw == "" {
			err = usageError{"an empty password is not allowed"}
		}
		return pw, err
	}
	cmd := &cobra.Command{Use: "key", Short: "Manage the passwords that open the repository"}
	cmd.PersistentFlags().StringVar(&newPassFile, "new-password-file", os.Getenv("CAIRN_NEW_PASSWORD_FILE"), "read the new password from this file (or set CAIRN_NEW_PASSWORD)")

	add := &cobra.Command{
		Use: "add", Short: "Add a password", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			pw, err := newPassword()
			if err != nil {
				return err
			}
			id, err := r.AddKey(cmd.Context(), pw, repo.DefaultKDF)
			if err != nil {
				return err
			}
			fmt.Printf("added key %s\n", id[:8])
			return nil
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			keys, err := r.Keys(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("   %-8s  %-19s  %-16s  %s\n", "ID", "CREATED", "HOST", "USER")
			for _, k := range keys {
				mark := " "
				if k.Current {
					mark = "*"
				}
				fmt.Printf(" %s %-8s  %-19s  %-16s  %s\n", mark, k.ID[:8], k.Created.Local().Format("2006-01-02 15:04:05"), k.Hostname, k.Username)
			}
			return nil
		},
	}
	remove := &cobra.Command{
		Use: "remove ID", Short: "Remove a key (not the one in use, not the last)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			if err := r.RemoveKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("removed key %s\n", args[0])
			return nil
		},
	}
	passwd := &cobra.Command{
		Use: "passwd", Short: "Change the password in use", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			pw, err := newPassword()
			if err != nil {
				return err
			}
			id, err := r.ChangePassword(cmd.Context(), pw, repo.DefaultKDF)
			if err != nil {
				return err
			}
			fmt.Printf("password changed; new key %s\n", id[:8])
			return nil
		},
	}
	cmd.AddCommand(add, list, remove, passwd)
	return cmd
}
