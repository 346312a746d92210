package snapshot

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestDeltaEncoderFields: deltaHead, then the listeners, then deltaTail
// are Delta's fields in order, with the same types and tags.
func TestDeltaEncoderFields(t *testing.T) {
	var got []reflect.StructField
	for _, typ := range []reflect.Type{reflect.TypeFor[deltaHead](), nil, reflect.TypeFor[deltaTail]()} {
		if typ == nil {
			f, _ := reflect.TypeFor[Delta]().FieldByName("Listeners")
			got = append(got, f)
			continue
		}
		for i := range typ.NumField() {
			got = append(got, typ.Field(i))
		}
	}
	want := reflect.TypeFor[Delta]()
	if len(got) != want.NumField() {
		t.Fatalf("deltaHead, Listeners and deltaTail have %d fields, Delta %d: update deltajson.go", len(got), want.NumField())
	}
	for i, f := range got {
		w := want.Field(i)
		if f.Name != w.Name || f.Type != w.Type || f.Tag != w.Tag {
			t.Errorf("field %d: %s %v %q, Delta has %s %v %q: update deltajson.go", i, f.Name, f.Type, f.Tag, w.Name, w.Type, w.Tag)
		}
	}
}

func fullListenerDelta() ListenerDelta {
	u32 := func(v uint32) *uint32 { return &v }
	f, yes := 2.5, true
	return ListenerDelta{
		Listener: Listener{Netns: 1, Family: FamilyInet6, Address: netip.MustParseAddr("::1"), Port: 80,
			Path: "/run/x.sock", Type: TypeStream, VFS: &VFS{Dev: 1, Inode: 2}, Inode: 3, UID: u32(4),
			AcceptQueue: 5, Backlog: 6, SynQueue: u32(7), GroupSynQueue: u32(8), FastOpenQueue: 9, Drops: u(10),
			V6Only: &yes, Processes: []Process{{PID: 11, Comm: "a", State: "S", PPID: 1, Role: RoleWorker, Serving: true}},
			Workload: &Workload{Namespace: "n", Pod: "p", PodUID: "u", Container: "c", ContainerID: "i", Runtime: "r", Node: "o"}},
		AcceptQueuePeak: 12,
		DropsPerSecond:  &f,
	}
}

// mutations returns, for every leaf field reachable from v (a pointer),
// a function that changes it in place, with its path.
func mutations(v reflect.Value, path string, out map[string]func(reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		out[path+" (nil)"] = nil // set to nil: handled by the caller
		mutations(v.Elem(), path+"*", out)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[netip.Addr]() {
			out[path] = nil
			return
		}
		for i := range v.NumField() {
			mutations(v.Field(i), path+"."+v.Type().Field(i).Name, out)
		}
	case reflect.Slice:
		out[path+" (nil)"] = nil
		out[path+" (longer)"] = nil
		for i := range v.Len() {
			mutations(v.Index(i), path+"[]", out)
		}
	default:
		out[path] = nil
	}
}

// set changes the field at path in a copy of ld.
func changed(ld ListenerDelta, path string) ListenerDelta {
	c := ld
	c.Processes = append([]Process(nil), ld.Processes...)
	for _, p := range []**uint32{&c.UID, &c.SynQueue, &c.GroupSynQueue} {
		if *p != nil {
			v := **p
			*p = &v
		}
	}
	d, f, b, vfs, w := *c.Drops, *c.DropsPerSecond, *c.V6Only, *c.VFS, *c.Workload
	c.Drops, c.DropsPerSecond, c.V6Only, c.VFS, c.Workload = &d, &f, &b, &vfs, &w
	v := reflect.ValueOf(&c).Elem()
	walk(v, path, "")
	return c
}

func walk(v reflect.Value, path, at string) bool {
	if at == path {
		change(v)
		return true
	}
	switch v.Kind() {
	case reflect.Pointer:
		if at+" (nil)" == path {
			v.Set(reflect.Zero(v.Type()))
			return true
		}
		return walk(v.Elem(), path, at+"*")
	case reflect.Struct:
		for i := range v.NumField() {
			if walk(v.Field(i), path, at+"."+v.Type().Field(i).Name) {
				return true
			}
		}
	case reflect.Slice:
		switch path {
		case at + " (nil)":
			v.Set(reflect.Zero(v.Type()))
			return true
		case at + " (longer)":
			v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
			return true
		}
		for i := range v.Len() {
			if walk(v.Index(i), path, at+"[]") {
				return true
			}
		}
	}
	return false
}

func change(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Struct: // netip.Addr
		v.Set(reflect.ValueOf(netip.MustParseAddr("::2")))
	default:
		panic("TestSameListenerDelta: cannot change a " + v.Kind().String())
	}
}

// TestSameListenerDelta: a change to any field, however deep, makes two
// listeners differ, so the encoder never reuses a stale line.
func TestSameListenerDelta(t *testing.T) {
	ld := fullListenerDelta()
	paths := map[string]func(reflect.Value){}
	mutations(reflect.ValueOf(&ld).Elem(), "", paths)
	if len(paths) < 30 {
		t.Fatalf("only %d fields found", len(paths))
	}
	same := changed(ld, "none")
	if !sameListenerDelta(&ld, &same) {
		t.Fatal("a copy differs")
	}
	for path := range paths {
		c := changed(ld, path)
		if sameListenerDelta(&ld, &c) {
			t.Errorf("changing %s: still the same", path)
		}
	}
	neg := ld
	zero, negZero := 0.0, 0.0
	negZero = -negZero
	neg.DropsPerSecond, ld.DropsPerSecond = &negZero, &zero
	if sameListenerDelta(&ld, &neg) {
		t.Error("0 and -0 encode differently but compare the same")
	}
}

// TestDeltaEncoder: byte for byte what encoding/json writes, over deltas
// where listeners change, appear, vanish and repeat.
func TestDeltaEncoder(t *testing.T) {
	ls := manyListeners(2000)
	var deltas []Delta
	prev := &Snapshot{TakenAt: time.Unix(0, 0).UTC(), Namespaces: []Namespace{{Inode: 1, Name: "a<b>"}}, Listeners: ls}
	deltas = append(deltas, Diff(nil, prev, nil))
	for i := 1; i < 6; i++ {
		cur := &Snapshot{TakenAt: time.Unix(int64(i), 0).UTC(), Namespaces: prev.Namespaces, Listeners: append([]Listener(nil), prev.Listeners...)}
		for j := range cur.Listeners {
			if j%(7*i) == 0 {
				cur.Listeners[j].AcceptQueue++
			}
			if j%(11*i) == 0 {
				d := deref(cur.Listeners[j].Drops) + 3
				cur.Listeners[j].Drops = &d
			}
		}
		switch i {
		case 2:
			cur.Listeners = cur.Listeners[100:]
			cur.Warnings = []string{"w & <x>"}
		case 3:
			cur.Listeners = append(cur.Listeners, manyListeners(50)...)
			cur.Hidden = []Hidden{{PID: 1, Errno: "EACCES"}}
		case 4:
			cur.Listeners = nil
		case 5:
			cur.Listeners = []Listener{}
		}
		var peaks map[ListenerKey]uint32
		if len(cur.Listeners) > 0 {
			peaks = map[ListenerKey]uint32{cur.Listeners[0].Key(): 99}
		}
		deltas = append(deltas, Diff(prev, cur, peaks))
		prev = cur
	}
	deltas = append(deltas, deltas[0], deltas[0])
	var got, want bytes.Buffer
	e := NewDeltaEncoder(&got)
	j := json.NewEncoder(&want)
	for i := range deltas {
		got.Reset()
		want.Reset()
		if err := e.Encode(&deltas[i]); err != nil {
			t.Fatal(err)
		}
		if err := j.Encode(deltas[i]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("delta %d: encoder and encoding/json differ:\n%.300s\n%.300s", i, got.Bytes(), want.Bytes())
		}
	}
	keys := map[ListenerKey]bool{}
	for _, l := range deltas[len(deltas)-1].Listeners {
		keys[l.Key()] = true
	}
	if len(e.cache) != len(keys) {
		t.Errorf("cache holds %d listeners, the last delta %d", len(e.cache), len(keys))
	}
}

// BenchmarkEncodeDelta10000: one refresh of `top --json` at 10,000
// listeners, nine in ten unchanged, with encoding/json and DeltaEncoder.
func BenchmarkEncodeDelta10000(b *testing.B) {
	s0 := &Snapshot{TakenAt: time.Unix(0, 0), Listeners: manyListeners(10000)}
	s1 := &Snapshot{TakenAt: time.Unix(1, 0), Listeners: append([]Listener(nil), s0.Listeners...)}
	for i := 0; i < len(s1.Listeners); i += 10 {
		s1.Listeners[i].AcceptQueue++
	}
	s2 := &Snapshot{TakenAt: time.Unix(2, 0), Listeners: s0.Listeners}
	d := []Delta{Diff(s0, s1, nil), Diff(s1, s2, nil)}
	b.Run("encoding-json", func(b *testing.B) {
		e := json.NewEncoder(&bytes.Buffer{})
		i := 0
		for b.Loop() {
			e.Encode(d[i%2])
			i++
		}
	})
	b.Run("delta-encoder", func(b *testing.B) {
		var buf bytes.Buffer
		e := NewDeltaEncoder(&buf)
		i := 0
		for b.Loop() {
			buf.Reset()
			e.Encode(&d[i%2])
			i++
		}
	})
}
