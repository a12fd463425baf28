package repo

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/chunk"
)

// NodeType is the kind of a directory entry.
type NodeType uint8

const (
	NodeFile     NodeType = 1
	NodeDir      NodeType = 2
	NodeSymlink  NodeType = 3
	NodeFifo     NodeType = 4
	NodeCharDev  NodeType = 5
	NodeBlockDev NodeType = 6
)

func (t NodeType) String() string {
	switch t {
	case NodeFile:
		return "file"
	case NodeDir:
		return "dir"
	case NodeSymlink:
		return "symlink"
	case NodeFifo:
		return "fifo"
	case NodeCharDev:
		return "chardev"
	case NodeBlockDev:
		return "blockdev"
	}
	return fmt.Sprintf("nodetype(%d)", uint8(t))
}

// Node is one directory entry with the metadata tar keeps and the fields
// change detection compares.
type Node struct {
	Name       string
	Type       NodeType
	Mode       uint32 // permission, setuid/setgid/sticky bits (07777)
	UID, GID   uint32
	User       string
	Group      string
	Size       uint64
	ModTime    int64 // ns since the epoch
	ChangeTime int64 // ns since the epoch
	Inode      uint64
	Device     uint64 // st_dev, with Inode identifies hard links
	Links      uint64
	Rdev       uint64 // device number of char and block devices
	LinkTarget string
	Subtree    chunk.ID   // NodeDir
	Content    []chunk.ID // NodeFile, in order
}

// Tree is one directory: its entries sorted by name.
type Tree struct {
	Nodes []Node
}

// Decoder limits: a hostile store cannot make a reader allocate more.
const (
	MaxTreeNodes   = 1 << 20
	MaxNameLen     = 4096
	MaxChunksFile  = 1 << 24 // 16 Ti chunks
	maxUserNameLen = 256
	treeVersion    = 1
)

// ValidName reports whether name can be a single path component.
func ValidName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid name %q", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes is too long", len(name))
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains a slash or NUL", name)
	}
	return nil
}

// Sort orders t's nodes by name, the order Encode requires.
func (t *Tree) Sort() {
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
}

// Encode returns the canonical bytes of t: equal trees encode equally, so an
// unchanged directory keeps its tree ID. Nodes must be sorted.
func (t *Tree) Encode() []byte {
	e := enc{b: make([]byte, 0, 64+len(t.Nodes)*96)}
	e.byte(treeVersion)
	e.uvarint(uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		e.string(n.Name)
		e.byte(byte(n.Type))
		e.uvarint(uint64(n.Mode))
		e.uvarint(uint64(n.UID))
		e.uvarint(uint64(n.GID))
		e.string(n.User)
		e.string(n.Group)
		e.uvarint(n.Size)
		e.varint(n.ModTime)
		e.varint(n.ChangeTime)
		e.uvarint(n.Inode)
		e.uvarint(n.Device)
		e.uvarint(n.Links)
		switch n.Type {
		case NodeFile:
			e.uvarint(uint64(len(n.Content)))
			for _, id := range n.Content {
				e.id(id)
			}
		case NodeDir:
			e.id(n.Subtree)
		case NodeSymlink:
			e.string(n.LinkTarget)
		case NodeCharDev, NodeBlockDev:
			e.uvarint(n.Rdev)
		}
	}
	return e.b
}

// DecodeTree decodes and validates a tree: every name is a single path
// component, names are unique and sorted, counts are within limits.
func DecodeTree(b []byte) (*Tree, error) {
	d := dec{b: b}
	if v := d.byte(); d.err == nil && v != treeVersion {
		return nil, fmt.Errorf("tree version %d: %w", v, ErrCorrupt)
	}
	// The smallest encoded node is about 16 bytes.
	n := d.count(16, MaxTreeNodes, "tree nodes")
	t := &Tree{Nodes: make([]Node, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		var nd Node
		nd.Name = d.string(MaxNameLen)
		nd.Type = NodeType(d.byte())
		nd.Mode = d.uvarint32()
		nd.UID = d.uvarint32()
		nd.GID = d.uvarint32()
		nd.User = d.string(maxUserNameLen)
		nd.Group = d.string(maxUserNameLen)
		nd.Size = d.uvarint()
		nd.ModTime = d.varint()
		nd.ChangeTime = d.varint()
		nd.Inode = d.uvarint()
		nd.Device = d.uvarint()
		nd.Links = d.uvarint()
		switch nd.Type {
		case NodeFile:
			c := d.count(chunk.IDSize, MaxChunksFile, "file chunks")
			nd.Content = make([]chunk.ID, c)
			for j := range nd.Content {
				nd.Content[j] = d.id()
			}
		case NodeDir:
			nd.Subtree = d.id()
		case NodeSymlink:
			nd.LinkTarget = d.string(MaxNameLen * 4)
		case NodeCharDev, NodeBlockDev:
			nd.Rdev = d.uvarint()
		case NodeFifo:
		default:
			if d.err == nil {
				return nil, fmt.Errorf("tree node %q has unknown type %d: %w", nd.Name, nd.Type, ErrCorrupt)
			}
		}
		if d.err != nil {
			break
		}
		if err := ValidName(nd.Name); err != nil {
			return nil, fmt.Errorf("tree node %d: %v: %w", i, err, ErrCorrupt)
		}
		if !utf8.ValidString(nd.User) || !utf8.ValidString(nd.Group) {
			return nil, fmt.Errorf("tree node %q: owner names are not UTF-8: %w", nd.Name, ErrCorrupt)
		}
		if nd.Mode&^0o7777 != 0 {
			return nil, fmt.Errorf("tree node %q: mode %o has bits beyond 07777: %w", nd.Name, nd.Mode, ErrCorrupt)
		}
		if len(t.Nodes) > 0 && t.Nodes[len(t.Nodes)-1].Name >= nd.Name {
			return nil, fmt.Errorf("tree node %q is duplicate or out of order: %w", nd.Name, ErrCorrupt)
		}
		t.Nodes = append(t.Nodes, nd)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode tree: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("tree has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return t, nil
}

// Find returns the node named name, or nil.
func (t *Tree) Find(name string) *Node {
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n Node, s string) int { return strings.Compare(n.Name, s) })
	if !ok {
		return nil
	}
	return &t.Nodes[i]
}

// Equal reports whether two encoded trees are equal; a helper for tests.
func (t *Tree) Equal(o *Tree) bool { return bytes.Equal(t.Encode(), o.Encode()) }
