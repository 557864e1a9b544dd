;; reverse: the request's bytes in reverse order.
(module
  ;;@alloc
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (local $out i32) (local $i i32)
    (local.set $out (call $alloc (local.get $n)))
    (if (i32.lt_s (local.get $out) (i32.const 0)) (then (return (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8
          (i32.add (local.get $out) (local.get $i))
          (i32.load8_u (i32.add (local.get $p) (i32.sub (i32.sub (local.get $n) (local.get $i)) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $output (local.get $out) (local.get $n))
    (i32.const 0)))
