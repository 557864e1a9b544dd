;; notes: an empty request returns the user's "note"; any other request becomes the note.
(module
  ;;@alloc
  (data (i32.const 16) "note")
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (local $len i32) (local $buf i32)
    (if (i32.eqz (local.get $n))
      (then
        (local.set $buf (call $alloc (i32.const 65536)))
        (if (i32.lt_s (local.get $buf) (i32.const 0)) (then (return (i32.const 2))))
        (local.set $len (call $data_get (i32.const 16) (i32.const 4) (local.get $buf) (i32.const 65536)))
        (if (i32.lt_s (local.get $len) (i32.const 0)) (then (local.set $len (i32.const 0))))
        (call $output (local.get $buf) (local.get $len))
        (return (i32.const 0))))
    (call $data_put (i32.const 16) (i32.const 4) (local.get $p) (local.get $n))
    (call $output (local.get $p) (local.get $n))
    (i32.const 0)))
