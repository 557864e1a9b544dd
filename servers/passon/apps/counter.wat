;; counter: the user's "count" key holds a decimal number; each call adds one and returns it.
(module
  ;;@alloc
  (data (i32.const 16) "count")
  ;; Reads the decimal at [p, p+n) (non-digits stop the parse).
  (func $atoi (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $v i32) (local $c i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (br_if $done (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57))))
        (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $v))
  ;; Writes v in decimal ending just before address 256; returns the start address.
  (func $itoa (param $v i32) (result i32)
    (local $p i32)
    (local.set $p (i32.const 256))
    (loop $next
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $next (i32.ne (local.get $v) (i32.const 0))))
    (local.get $p))
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (local $len i32) (local $v i32) (local $s i32)
    ;; value buffer at 64..128
    (local.set $len (call $data_get (i32.const 16) (i32.const 5) (i32.const 64) (i32.const 64)))
    (if (i32.gt_s (local.get $len) (i32.const 0))
      (then (local.set $v (call $atoi (i32.const 64) (local.get $len)))))
    (local.set $v (i32.add (local.get $v) (i32.const 1)))
    (local.set $s (call $itoa (local.get $v)))
    (call $data_put (i32.const 16) (i32.const 5) (local.get $s) (i32.sub (i32.const 256) (local.get $s)))
    (call $output (local.get $s) (i32.sub (i32.const 256) (local.get $s)))
    (i32.const 0))
  (func (export "selftest") (result i32) (i32.const 0)))
