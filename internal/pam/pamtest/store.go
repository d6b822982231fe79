package pamtest

import (
	"math/bits"
	"slices"
	"strings"
	"sync"

	"github.com/safeperm/safeperm/internal/pam"
)

// numShards is the number of overlay shards; Safe i lives in shard i%numShards.
const numShards = 256

// memberChange is the current state of one member of a Safe that differs,
// or once differed, from the seeded vault.
type memberChange struct {
	m       member
	removed bool
	// added is set when the member was not in the seeded list; such members
	// are listed after the seeded ones, in order of addition.
	added bool
}

// safeOverlay holds the changes made to one Safe.
type safeOverlay struct {
	deleted bool
	writes  int64 // API member writes that changed state, since the last ResetStats
	changes []memberChange
}

func (ov *safeOverlay) find(name string) *memberChange {
	if ov == nil {
		return nil
	}
	for k := range ov.changes {
		if strings.EqualFold(ov.changes[k].m.p.name, name) {
			return &ov.changes[k]
		}
	}
	return nil
}

type shard struct {
	mu sync.RWMutex
	m  map[int32]*safeOverlay
}

// store is the mutable state: the seeded Vault plus an overlay of changes,
// and one visibility index per user. Lock order: shard, then visibility
// index; never the reverse.
type store struct {
	v      *Vault
	shards [numShards]shard
	vis    []*visIndex // by vaultUser.slot
}

func newStore(v *Vault) *store {
	st := &store{v: v}
	for k := range st.shards {
		st.shards[k].m = make(map[int32]*safeOverlay)
	}
	st.vis = make([]*visIndex, len(v.users))
	var adminVis *visIndex
	for _, u := range v.users {
		if u.rights == nil && adminVis != nil {
			st.vis[u.slot] = adminVis.clone()
			continue
		}
		x := newVisIndex(v.n)
		if u.rights == nil {
			for i := 0; i < v.n; i++ {
				if v.adminAccess(i) != AccessHidden {
					x.words[i>>6] |= 1 << (i & 63)
				}
			}
		} else {
			for i := 0; i < v.n; i++ {
				info := v.info(i, true)
				if _, ok := u.rights(info); ok {
					x.words[i>>6] |= 1 << (i & 63)
				}
			}
		}
		x.recount()
		if u.rights == nil {
			adminVis = x
		}
		st.vis[u.slot] = x
	}
	return st
}

func (st *store) shard(i int) *shard { return &st.shards[i%numShards] }

// lookup returns the index of the Safe named name unless it is deleted.
func (st *store) lookup(name string) (int, bool) {
	i, ok := st.v.Lookup(name)
	if !ok {
		return 0, false
	}
	sh := st.shard(i)
	sh.mu.RLock()
	ov := sh.m[int32(i)]
	deleted := ov != nil && ov.deleted
	sh.mu.RUnlock()
	return i, !deleted
}

// deleted reports whether Safe i was deleted.
func (st *store) deleted(i int) bool {
	sh := st.shard(i)
	sh.mu.RLock()
	ov := sh.m[int32(i)]
	d := ov != nil && ov.deleted
	sh.mu.RUnlock()
	return d
}

// membersLocked appends the current members of Safe info to dst. The
// caller holds the Safe's shard lock.
func (st *store) membersLocked(info *SafeInfo, ov *safeOverlay, dst []member) []member {
	start := len(dst)
	dst = st.v.baseMembers(info, dst)
	if ov == nil || len(ov.changes) == 0 {
		return dst
	}
	n := start
	for _, m := range dst[start:] {
		if c := ov.find(m.p.name); c != nil {
			if c.removed {
				continue
			}
			m = c.m
		}
		dst[n] = m
		n++
	}
	dst = dst[:n]
	for _, c := range ov.changes {
		if c.added && !c.removed {
			dst = append(dst, c.m)
		}
	}
	return dst
}

// memberLocked returns the current membership of name in Safe info and
// whether name is in the seeded list. The caller holds the shard lock.
func (st *store) memberLocked(info *SafeInfo, ov *safeOverlay, name string) (m member, ok, seeded bool) {
	var buf [16]member
	base := st.v.baseMembers(info, buf[:0])
	for _, b := range base {
		if strings.EqualFold(b.p.name, name) {
			m, ok, seeded = b, true, true
			break
		}
	}
	if c := ov.find(name); c != nil {
		return c.m, !c.removed, seeded
	}
	return m, ok, seeded
}

// permsLocked returns the flags user holds on Safe info and whether it is a
// member. The caller holds the shard lock.
func (st *store) permsLocked(info *SafeInfo, ov *safeOverlay, u *vaultUser) (pam.PermSet, bool) {
	if c := ov.find(u.name); c != nil {
		return c.m.perms, !c.removed
	}
	if u.slot == 0 || u.rights == nil {
		return accessPerms(info.Access)
	}
	return u.rights(*info)
}

// setLocked records m as the current state of its member in Safe i (or its
// removal) and keeps the visibility indexes in step. The caller holds the
// shard's write lock.
func (st *store) setLocked(sh *shard, i int, m member, removed, seeded bool) *safeOverlay {
	ov := sh.m[int32(i)]
	if ov == nil {
		ov = &safeOverlay{}
		sh.m[int32(i)] = ov
	}
	if c := ov.find(m.p.name); c != nil {
		c.m, c.removed = m, removed
	} else {
		ov.changes = append(ov.changes, memberChange{m: m, removed: removed, added: !seeded})
	}
	if u, ok := st.v.userByKey[strings.ToLower(m.p.name)]; ok {
		st.vis[u.slot].set(i, !removed)
	}
	return ov
}

// deleteLocked marks Safe i deleted. The caller holds the shard's write lock.
func (st *store) deleteLocked(sh *shard, i int) {
	ov := sh.m[int32(i)]
	if ov == nil {
		ov = &safeOverlay{}
		sh.m[int32(i)] = ov
	}
	ov.deleted = true
	for _, x := range st.vis {
		x.set(i, false)
	}
}

// touched returns the indexes of every Safe with an overlay, sorted.
func (st *store) touched() []int {
	var out []int
	for k := range st.shards {
		sh := &st.shards[k]
		sh.mu.RLock()
		for i := range sh.m {
			out = append(out, int(i))
		}
		sh.mu.RUnlock()
	}
	slices.Sort(out)
	return out
}

// blockWords is the number of bitmap words per counted block (1024 Safes).
const blockWords = 16

// visIndex is the set of Safes one user can see, as a bitmap with
// per-block counts, so that the Safe at a given rank is found in
// O(n/1024 + 16) without a list of Safes.
type visIndex struct {
	mu     sync.RWMutex
	words  []uint64
	blocks []int32
	total  int
}

func newVisIndex(n int) *visIndex {
	nw := (n + 63) / 64
	return &visIndex{words: make([]uint64, nw), blocks: make([]int32, (nw+blockWords-1)/blockWords)}
}

func (x *visIndex) clone() *visIndex {
	return &visIndex{words: slices.Clone(x.words), blocks: slices.Clone(x.blocks), total: x.total}
}

// recount computes the block counts and total from the words.
func (x *visIndex) recount() {
	x.total = 0
	for b := range x.blocks {
		c := 0
		for _, w := range x.words[b*blockWords : min((b+1)*blockWords, len(x.words))] {
			c += bits.OnesCount64(w)
		}
		x.blocks[b] = int32(c)
		x.total += c
	}
}

// set adds (on) or removes Safe i.
func (x *visIndex) set(i int, on bool) {
	bit := uint64(1) << (i & 63)
	x.mu.Lock()
	defer x.mu.Unlock()
	w := &x.words[i>>6]
	was := *w&bit != 0
	if was == on {
		return
	}
	d := int32(1)
	if on {
		*w |= bit
	} else {
		*w &^= bit
		d = -1
	}
	x.blocks[(i>>6)/blockWords] += d
	x.total += int(d)
}

// has reports whether Safe i is in the set.
func (x *visIndex) has(i int) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.words[i>>6]&(1<<(i&63)) != 0
}

// page appends to dst the indexes of ranks offset..offset+limit-1 and
// returns them with the total.
func (x *visIndex) page(offset, limit int, dst []int32) ([]int32, int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if offset >= x.total || limit <= 0 {
		return dst, x.total
	}
	rank, b := 0, 0
	for b < len(x.blocks) && rank+int(x.blocks[b]) <= offset {
		rank += int(x.blocks[b])
		b++
	}
	w := b * blockWords
	for w < len(x.words) && rank+bits.OnesCount64(x.words[w]) <= offset {
		rank += bits.OnesCount64(x.words[w])
		w++
	}
	skip := offset - rank
	for ; w < len(x.words) && limit > 0; w++ {
		word := x.words[w]
		for word != 0 && limit > 0 {
			t := bits.TrailingZeros64(word)
			word &= word - 1
			if skip > 0 {
				skip--
				continue
			}
			dst = append(dst, int32(w*64+t))
			limit--
		}
	}
	return dst, x.total
}

// snapshot returns a copy of the bitmap.
func (x *visIndex) snapshot() []uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.words)
}

// count returns the number of Safes in the set.
func (x *visIndex) count() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.total
}
